"""The API's response models, pydantic only: the server renders its answers with them and the
client (`workflow_engine.client`) parses them with the same classes, without importing the
server (FastAPI, SQLAlchemy, the engine)."""
