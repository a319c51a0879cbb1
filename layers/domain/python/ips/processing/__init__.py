"""Processing (the process function): a batch of image messages as one unit of I/O (`service`): each image fetched
politely (`polite`), reused (`reuse`) or compressed and stored (`image`), then settled, recorded and counted once
(`settle`), on the process's kept thread pools (`thread_pools`)."""
