"""Session recordings (issue 22): the WGREC v1 format, its writer thread and its storage."""
