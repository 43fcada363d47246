"""The platform: the bus (the one consumer loop), connections, settings, Redis keys and lock,
topics, URIs, runner adverts, observability. It may import the domain and the schemas; the
domain never imports it."""
