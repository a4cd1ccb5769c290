"""Call recordings: a cheap raw capture on the live path, encoded after the call into a two-channel MP3.

capture.py (the live path's spool writer), spool.py (its format and reader), encoder.py (spool → MP3),
storage.py (folder or S3-compatible store), service.py (who is recorded, hand-off, encode-and-store job,
deletion), purge.py (retention), jobs.py, routes.py, repository.py, schemas.py.
"""
