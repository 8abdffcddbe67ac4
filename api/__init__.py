"""The thin HTTP front end: authenticate, normalize, enqueue, relay the answer back."""
