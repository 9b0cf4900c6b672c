#!/usr/bin/env python3
"""Writes the REST API's OpenAPI 3.1 document: python3 scripts/openapi-document.py > Sources/LPRServer/Web/openapi.json (then scripts/embed-web)

The document must match what the server does: OpenAPITests compares its operations with the
server's route table and runs schemathesis against the live API with it."""
import json
ts = {"type": "string", "format": "date-time"}
tsn = {"type": ["string", "null"], "format": "date-time"}
def ref(n): return {"$ref": f"#/components/schemas/{n}"}
def err(desc): return {"description": desc, "content": {"application/json": {"schema": ref("Error")}}}
def ok(desc, schema, code="200"): return {code: {"description": desc, "content": {"application/json": {"schema": schema}}}}
E400 = {"400": err("Bad input: the error names the field")}
E401 = {"401": err("No token, or an unknown one")}
E403 = {"403": err("A read-only token on a write")}
E404 = lambda what: {"404": err(what)}
camera_id = {"name": "id", "in": "path", "required": True, "description": "A camera id (no '/', '+', '#' or control character)",
             "schema": {"type": "string", "minLength": 1, "pattern": "^[^/+#\\u0000-\\u001f\\u007f-\\u009f]+$"}}
entry_id = {"name": "entry_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}}
def q(name, schema, desc): return {"name": name, "in": "query", "required": False, "description": desc, "schema": schema}
plate_schema = {"type": "string", "pattern": "[^\\W_]", "description": "Must hold a letter or a digit (any script); case, spaces and separators do not count"}

doc = {
 "openapi": "3.1.0",
 "info": {"title": "Databus LPR server API", "version": "1.0.0",
          "description": "The REST API of the Databus LPR server (`databus up`). Every route under /api needs `Authorization: Bearer <token>` (the admin token from the data folder's api-token file, or a read-only token for GET), except this document. Errors are JSON and name the field at fault."},
 "servers": [{"url": "/"}],
 "security": [{"bearer": []}],
 "paths": {
  "/health": {"get": {"operationId": "health", "summary": "The server's health check (the seed's JSON)", "security": [],
     "responses": ok("Health", ref("SystemHealth"))}},
  "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus text: the broker's and the server's metrics", "security": [],
     "responses": {"200": {"description": "Prometheus text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
  "/api/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "security": [],
     "responses": ok("The OpenAPI document", {"type": "object"})}},
  "/api/detections": {"get": {"operationId": "listDetections", "summary": "Detections, newest first, one page at a time",
     "parameters": [
        q("plate", {"type": "string"}, "A plate: exact after normalising (case, spaces and separators do not count), a prefix when it ends with *, or fuzzy with fuzzy=true. A plate without letters or digits matches nothing"),
        q("fuzzy", {"type": "boolean"}, "Also plates within the watch-list's distance after folding OCR confusions (needs plate)"),
        q("camera", {"type": "string"}, "Only this camera"),
        q("checkpoint", {"type": "string"}, "Only this checkpoint"),
        q("since", {"type": "string", "format": "date-time"}, "Captured at or after"),
        q("until", {"type": "string", "format": "date-time"}, "Captured before (after since)"),
        q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}, "Page size"),
        q("cursor", {"type": "string", "pattern": "^c[1-9][0-9]{0,17}$"}, "next_cursor of the previous page")],
     "responses": {**ok("A page", ref("DetectionPage")), **E400, **E401}}},
  "/api/detections/{message_id}": {"get": {"operationId": "getDetection", "summary": "One detection",
     "parameters": [{"name": "message_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}],
     "responses": {**ok("The detection as received, with received_at", ref("Detection")), **E401, **E404("No such detection")}}},
  "/api/cameras": {"get": {"operationId": "listCameras", "summary": "Every known camera",
     "responses": {**ok("Cameras", {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": ref("Camera")}}}), **E401}}},
  "/api/cameras/{id}": {"get": {"operationId": "getCamera", "summary": "One camera", "parameters": [camera_id],
     "responses": {**ok("The camera", ref("Camera")), **E400, **E401, **E404("No such camera")}}},
  "/api/cameras/{id}/config": {"put": {"operationId": "setCameraConfig", "summary": "Sets a camera's desired configuration (publishes config/update, retained)",
     "parameters": [camera_id],
     "requestBody": {"required": True, "content": {"application/json": {"schema": ref("ConfigurationRequest")}}},
     "responses": {"202": {"description": "Published", "content": {"application/json": {"schema": ref("ConfigurationAccepted")}}}, **E400, **E401, **E403}}},
  "/api/cameras/{id}/control": {"post": {"operationId": "sendCameraCommand", "summary": "Sends a command and waits for the camera's answer",
     "parameters": [camera_id],
     "requestBody": {"required": True, "content": {"application/json": {"schema": ref("ControlRequest")}}},
     "responses": {**ok("The camera's control/response as it sent it (status may be error or unsupported)", ref("ControlResponse")),
                   **E400, **E401, **E403, **E404("No such camera"),
                   "504": err("The camera did not answer in time; the body has error \"timeout\" and the command's message_id")}}},
  "/api/cameras/{id}/health/request": {"post": {"operationId": "requestCameraHealth", "summary": "Asks a camera for a fresh health message",
     "parameters": [camera_id],
     "responses": {"202": {"description": "Asked", "content": {"application/json": {"schema": {"type": "object", "required": ["camera_id", "requested"],
         "properties": {"camera_id": {"type": "string"}, "requested": {"type": "boolean"}}}}}}, **E400, **E401, **E403, **E404("No such camera")}}},
  "/api/watchlist": {
     "get": {"operationId": "listWatchlist", "summary": "The watch-list and its version",
        "responses": {**ok("The watch-list", ref("Watchlist")), **E401}},
     "post": {"operationId": "addWatchlistEntry", "summary": "Adds an entry; in force for the next detection, published on blacklist/updates",
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref("WatchlistEntryInput")}}},
        "responses": {**ok("The entry as saved", ref("WatchlistEntry"), "201"), **E400, **E401, **E403, "409": err("An entry with this id exists")}}},
  "/api/watchlist/{entry_id}": {
     "put": {"operationId": "replaceWatchlistEntry", "summary": "Replaces an entry, or adds it with this id (the path names the entry, whatever id the body has)", "parameters": [entry_id],
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref("WatchlistEntryInput")}}},
        "responses": {**ok("Replaced", ref("WatchlistEntry")), **ok("Added", ref("WatchlistEntry"), "201"), **E400, **E401, **E403}},
     "delete": {"operationId": "deleteWatchlistEntry", "summary": "Removes an entry", "parameters": [entry_id],
        "responses": {"204": {"description": "Removed"}, **E401, **E403, **E404("No such entry")}}},
  "/api/alerts": {"get": {"operationId": "listAlerts", "summary": "Alerts, newest first",
     "parameters": [q("since", {"type": "string", "format": "date-time"}, "At or after"),
                    q("level", {"type": "string", "enum": ["info", "warning", "critical"]}, "This level and above"),
                    q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "At most")],
     "responses": {**ok("Alerts", {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": ref("Alert")}}}), **E400, **E401}}},
  "/api/checkpoints": {"get": {"operationId": "listCheckpoints", "summary": "Checkpoints: cameras and the last hour's figures",
     "responses": {**ok("Checkpoints", {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": ref("Checkpoint")}}}), **E401}}},
  "/api/stats": {"get": {"operationId": "statistics", "summary": "Detections per hour per camera (by time received)",
     "parameters": [q("since", {"type": "string", "format": "date-time"}, "Start (default: 24 hours before until)"),
                    q("until", {"type": "string", "format": "date-time"}, "End (default: now); at most 31 days after since"),
                    q("camera", {"type": "string"}, "Only this camera")],
     "responses": {**ok("Counts", ref("Statistics")), **E400, **E401}}},
  "/api/events": {"get": {"operationId": "events", "summary": "Server-Sent Events: detection, alert, camera and command events",
     "responses": {"200": {"description": "An event stream (event: detection|alert|camera|command; data: one JSON object)",
        "content": {"text/event-stream": {"schema": {"type": "string"}}}}, **E401}}},
 },
 "components": {
  "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "The admin token (data folder's api-token) or a read-only token"}},
  "schemas": {
   "Error": {"type": "object", "required": ["error", "message"], "properties": {
       "error": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"},
       "errors": {"type": "array", "items": {"type": "object", "required": ["path", "reason"], "properties": {"path": {"type": "string"}, "reason": {"type": "string"}}}},
       "message_id": {"type": "string"}}},
   "SystemHealth": {"type": "object", "required": ["status", "timestamp", "connection_status", "message_rate", "error_rate", "latency_ms"], "properties": {
       "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]}, "timestamp": ts, "connection_status": {"type": "string"},
       "last_message_received": tsn, "message_rate": {"type": "number"}, "error_rate": {"type": "number"}, "latency_ms": {"type": "number"}}},
   "Detection": {"type": "object", "description": "The detection message as the camera sent it (unknown fields kept), with received_at",
       "required": ["message_id", "timestamp", "camera_id", "checkpoint_id", "detection_data", "received_at"], "properties": {
       "message_id": {"type": "string"}, "timestamp": ts, "camera_id": {"type": "string"}, "checkpoint_id": {"type": "string"},
       "detection_data": {"type": "object", "properties": {"plates": {"type": "array", "items": {"type": "object"}}, "vehicles": {"type": "array", "items": {"type": "object"}}}},
       "metadata": {"type": "object"}, "received_at": ts}},
   "DetectionPage": {"type": "object", "required": ["items", "next_cursor"], "properties": {
       "items": {"type": "array", "items": ref("Detection")}, "next_cursor": {"type": ["string", "null"]}}},
   "Camera": {"type": "object", "required": ["camera_id", "checkpoint_id", "online", "last_seen", "health", "config", "last_detection"], "properties": {
       "camera_id": {"type": "string"}, "checkpoint_id": {"type": ["string", "null"]}, "online": {"type": ["boolean", "null"]},
       "first_seen": tsn, "last_seen": tsn, "health_status": {"type": ["string", "null"]}, "problems": {"type": "array", "items": {"type": "string"}},
       "health": {"type": ["object", "null"], "description": "The latest health message as received"},
       "config": {"type": "object", "required": ["desired", "reported"], "properties": {
           "desired": {"type": ["object", "null"]}, "desired_at": tsn, "reported": {"type": ["object", "null"]}, "reported_at": tsn}},
       "last_detection": {"oneOf": [ref("Detection"), {"type": "null"}]}}},
   "ConfigurationData": {"type": "object", "description": "config_data: the members the protocol names are type-checked (null is the same as absent), others pass as they are", "properties": {
       "detection_interval": {"type": ["number", "null"]}, "confidence_threshold": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
       "max_vehicles_per_frame": {"type": ["integer", "null"], "minimum": -9223372036854775808, "maximum": 9223372036854775807}, "image_quality": {"type": ["string", "null"]}, "enable_recording": {"type": ["boolean", "null"]},
       "recording_duration": {"type": ["number", "null"]},
       "alert_settings": {"type": ["object", "null"], "properties": {"enable_alerts": {"type": ["boolean", "null"]}, "alert_confidence_threshold": {"type": ["number", "null"]},
           "notification_channels": {"type": ["array", "null"], "items": {"type": "string"}}}}}},
   "ConfigurationRequest": {"type": "object", "required": ["config_type", "config_data"], "properties": {
       "config_type": {"type": "string", "minLength": 1}, "config_data": ref("ConfigurationData")}},
   "ConfigurationAccepted": {"type": "object", "required": ["message_id", "camera_id", "config"], "properties": {
       "message_id": {"type": "string"}, "camera_id": {"type": "string"}, "config": {"type": "object", "description": "The config/update message as published"}}},
   "ControlRequest": {"type": "object", "required": ["command"], "description": "null is the same as absent", "properties": {
       "command": {"type": "string", "minLength": 1, "examples": ["restart_camera", "get_status", "ping"]}, "parameters": {"type": ["object", "null"]},
       "priority": {"enum": ["low", "normal", "high", None], "default": "normal"},
       "timeout_seconds": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 120, "default": 10, "description": "At most the server's limit (120 s by default)"}}},
   "ControlResponse": {"type": "object", "description": "The camera's answer as it sent it", "required": ["status"], "properties": {
       "message_id": {"type": "string"}, "status": {"type": "string", "enum": ["ok", "error", "unsupported"]}, "result": {"type": "object"}, "timestamp": ts}},
   "WatchlistEntryInput": {"type": "object", "required": ["plate"], "description": "null (and an empty id, country or expires_at) is the same as absent", "properties": {
       "id": {"type": ["string", "null"], "description": "Made when missing"}, "plate": plate_schema, "reason": {"type": ["string", "null"]},
       "level": {"enum": ["info", "warning", "critical", None], "default": "critical"},
       "country": {"type": ["string", "null"]}, "camera_ids": {"type": ["array", "null"], "items": {"type": "string"}},
       "checkpoint_ids": {"type": ["array", "null"], "items": {"type": "string"}}, "expires_at": {"anyOf": [ts, {"type": "null"}, {"const": ""}]}}},
   "WatchlistEntry": {"type": "object", "required": ["id", "plate", "reason", "level", "country", "camera_ids", "checkpoint_ids", "expires_at"], "properties": {
       "id": {"type": "string"}, "plate": {"type": "string"}, "reason": {"type": "string"}, "level": {"type": "string", "enum": ["info", "warning", "critical"]},
       "country": {"type": ["string", "null"]}, "camera_ids": {"type": "array", "items": {"type": "string"}},
       "checkpoint_ids": {"type": "array", "items": {"type": "string"}}, "expires_at": tsn}},
   "Watchlist": {"type": "object", "required": ["version", "items"], "properties": {"version": {"type": "integer"}, "items": {"type": "array", "items": ref("WatchlistEntry")}}},
   "Alert": {"type": "object", "required": ["alert_id", "level", "kind", "message", "timestamp"], "properties": {
       "alert_id": {"type": "string"}, "level": {"type": "string", "enum": ["info", "warning", "critical"]},
       "kind": {"type": "string", "enum": ["watchlist_hit", "camera_offline", "camera_online", "camera_health", "message_rejected", "server"]},
       "camera_id": {"type": "string"}, "message": {"type": "string"}, "timestamp": ts, "details": {"type": "object"}}},
   "Checkpoint": {"type": "object", "required": ["checkpoint_id", "cameras", "cameras_online", "detections_last_hour", "unique_plates_last_hour", "watchlist_hits_last_hour", "mean_confidence"], "properties": {
       "checkpoint_id": {"type": "string"},
       "cameras": {"type": "array", "items": {"type": "object", "required": ["camera_id", "online"], "properties": {"camera_id": {"type": "string"}, "online": {"type": ["boolean", "null"]}}}},
       "cameras_online": {"type": "integer"}, "detections_last_hour": {"type": "integer"}, "unique_plates_last_hour": {"type": "integer"},
       "watchlist_hits_last_hour": {"type": "integer"}, "mean_confidence": {"type": ["number", "null"]}}},
   "Statistics": {"type": "object", "required": ["since", "until", "items"], "properties": {"since": ts, "until": ts,
       "items": {"type": "array", "items": {"type": "object", "required": ["hour", "camera_id", "count"], "properties": {
           "hour": ts, "camera_id": {"type": "string"}, "count": {"type": "integer"}}}}}},
  }}}
print(json.dumps(doc, indent=1))
