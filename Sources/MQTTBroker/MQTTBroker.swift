// The embedded MQTT broker; see Broker.swift.
