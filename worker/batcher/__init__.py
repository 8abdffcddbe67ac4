"""`sluice batcher`: the batch coordinator (validate, feed, collect, finalize, expire, cancel)."""
