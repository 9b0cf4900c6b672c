// The MQTT client library; see MQTTClient.swift.
