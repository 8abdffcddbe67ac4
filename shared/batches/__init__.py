"""High-volume batch jobs: files, batch records, line formats, the file store and batch scripts."""
