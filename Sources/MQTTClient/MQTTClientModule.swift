// The MQTT client library; its sources land with the client work (issue 5).
