"""A run end to end: the session (the settings unpacked at the door, the task built, the models
loaded), the projection and headroom before any call, the search, the test evaluation and its comparison,
the artifact and the export; and `paper-table`, which runs several."""
