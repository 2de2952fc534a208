"""keytrail's schema revisions, oldest first: 0001 is the schema of keytrail 0.1.0."""
