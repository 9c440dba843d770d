"""The durable outbox: a local spool that every record hits (fsynced) first, and the uploader that
moves it to the object store and deletes it only after the store confirmed. The edge collector's sensor
data and the inference server's decision log share it."""
