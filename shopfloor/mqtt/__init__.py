"""MQTT ingestion: JSON topics and Sparkplug B into tag samples (docs/mqtt.md)."""
