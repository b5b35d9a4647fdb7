"""Serving: the MQTT service, replay and a local broker."""
