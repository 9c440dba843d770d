"""Raw domain: external raw/gap assets, (line, date) partitions and the raw-objects sensor."""
