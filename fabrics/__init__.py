"""The super networks shipped with bsnc (`.bsn` files; see bsnc.lang.shipped)."""
