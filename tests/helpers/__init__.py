"""Helpers the tests share: a random-initialised export and generated videos
(:mod:`helpers.grounding`), in-memory and on-disk feature stores (:mod:`helpers.stores`)."""
