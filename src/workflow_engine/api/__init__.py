"""HTTP only: one module per resource; handlers parse, authorize, call a service, shape."""
