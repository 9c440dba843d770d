"""What the server serves and keeps: the model manager (cache, pointer polling, hot swap) and the
decision log."""
