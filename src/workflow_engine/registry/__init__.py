"""The service registry: a live, health-checked catalogue of the services workflows use."""
