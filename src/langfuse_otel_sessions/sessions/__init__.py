"""The session API: ``Session``, ``session()`` scopes, the ids in force, trace attributes.
May import: top."""
