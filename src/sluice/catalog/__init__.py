"""The catalog: sources, destinations, functions and their versions, instances, tokens, audit.

``tables`` holds the schema (SQLAlchemy Core), ``db`` the engine factory and migrations,
``crypto`` the encryption of sensitive setting values at rest.
"""
