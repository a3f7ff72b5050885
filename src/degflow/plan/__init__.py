"""Parse-time planning: every check of the config and the sheets, one module per workflow stage."""
