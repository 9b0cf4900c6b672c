// Databus LPR dashboard: our own small script, no framework, no build step, nothing from outside.
// Live through /api/events (Server-Sent Events read with fetch, so the token stays in a header).
'use strict';

const state = {
  token: localStorage.getItem('databus.token') || '',
  watchlist: [],
  cameras: new Map(),
  hitIDs: new Map(), // detection message_id -> watch-list reason
  feedIDs: new Set(),
  hourly: new Map(), // hour start (ms) -> count
  hitsToday: 0,
  searchCursor: null,
  events: null,
  retry: 1000,
};
const FEED_MAX = 60;
const ALERTS_MAX = 50;

const $ = (id) => document.getElementById(id);
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
function normalizePlate(text) { return String(text || '').toUpperCase().replace(/[^A-Z0-9]/g, ''); }
function pad(n) { return String(n).padStart(2, '0'); }
function formatTime(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (isNaN(date)) return '—';
  const now = new Date();
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return date.toDateString() === now.toDateString() ? time : `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
}
function ago(iso) {
  if (!iso) return 'never';
  const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86400)}d ago`;
}
function duration(seconds) {
  if (seconds === undefined || seconds === null) return '—';
  const s = Number(seconds);
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

// MARK: API

class APIError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (response.status === 401) {
    signOut('The server refused the token: enter it again.');
    throw new APIError(401, json);
  }
  if (!response.ok) throw new APIError(response.status, json);
  return json;
}

// MARK: Sign in

function showLogin(message) {
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('token-input').focus();
}

function signOut(message) {
  if (state.events) state.events.abort();
  state.events = null;
  state.token = '';
  localStorage.removeItem('databus.token');
  showLogin(message);
}

async function signIn(token) {
  state.token = token.trim();
  try {
    await api('GET', '/api/watchlist');
  } catch (error) {
    if (error.status !== 401) showLogin(`Cannot reach the server: ${error.message}`);
    return;
  }
  localStorage.setItem('databus.token', state.token);
  $('login').hidden = true;
  $('app').hidden = false;
  await loadAll();
  connectEvents();
}

// MARK: Loading

async function loadAll() {
  await Promise.all([loadWatchlist(), loadCameras(), loadStats()]);
  await loadAlerts();
  await loadDetections();
}

async function loadDetections() {
  const page = await api('GET', '/api/detections?limit=40');
  $('feed').replaceChildren();
  state.feedIDs.clear();
  for (const detection of page.items.slice().reverse()) addDetection(detection, state.hitIDs.has(detection.message_id), false);
  updateEmpty();
}

async function loadAlerts() {
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  const [recent, today] = await Promise.all([
    api('GET', '/api/alerts?limit=40'),
    api('GET', `/api/alerts?limit=1000&since=${encodeURIComponent(midnight.toISOString())}`),
  ]);
  $('alerts').replaceChildren();
  for (const alert of recent.items.slice().reverse()) addAlert(alert, false);
  state.hitsToday = 0;
  for (const alert of today.items) {
    if (alert.kind !== 'watchlist_hit') continue;
    state.hitsToday += 1;
  }
  for (const alert of recent.items.concat(today.items)) rememberHit(alert);
  updateFigures();
  updateEmpty();
}

function rememberHit(alert) {
  if (alert.kind !== 'watchlist_hit' || !alert.details) return;
  const id = alert.details.detection_message_id;
  if (!id) return;
  const entry = state.watchlist.find((e) => e.id === alert.details.entry_id);
  state.hitIDs.set(id, entry && entry.reason ? entry.reason : alert.details.matched_plate || '');
  const row = document.querySelector(`.detection[data-message-id="${CSS.escape(id)}"]`);
  if (row && !row.classList.contains('hit')) markHit(row, state.hitIDs.get(id));
}

async function loadCameras() {
  const list = await api('GET', '/api/cameras');
  state.cameras.clear();
  for (const camera of list.items) state.cameras.set(camera.camera_id, camera);
  renderCameras();
}

async function refreshCamera(id) {
  try {
    const camera = await api('GET', `/api/cameras/${encodeURIComponent(id)}`);
    state.cameras.set(id, camera);
    renderCameras();
  } catch (_) { /* gone or not known yet */ }
}

async function loadStats() {
  const stats = await api('GET', '/api/stats');
  state.hourly.clear();
  for (const item of stats.items) {
    const hour = new Date(item.hour).getTime();
    state.hourly.set(hour, (state.hourly.get(hour) || 0) + item.count);
  }
  renderChart();
  updateFigures();
}

async function loadWatchlist() {
  const list = await api('GET', '/api/watchlist');
  state.watchlist = list.items;
  $('watchlist-version').textContent = `version ${list.version} · ${list.items.length} ${list.items.length === 1 ? 'entry' : 'entries'}`;
  renderWatchlist();
}

// MARK: Live events

async function connectEvents() {
  if (state.events) state.events.abort();
  const controller = new AbortController();
  state.events = controller;
  setLive('connecting');
  try {
    const response = await fetch('/api/events', { headers: { Authorization: `Bearer ${state.token}` }, signal: controller.signal });
    if (response.status === 401) { signOut('The server refused the token: enter it again.'); return; }
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    setLive('live');
    state.retry = 1000;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        handleBlock(block);
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return;
  }
  if (controller.signal.aborted) return;
  setLive('down');
  const delay = state.retry;
  state.retry = Math.min(state.retry * 2, 10000);
  setTimeout(async () => {
    if (state.events !== controller) return;
    try { await loadAll(); } catch (_) { /* shown by the status */ }
    connectEvents();
  }, delay);
}

function handleBlock(block) {
  let name = 'message';
  let data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) name = line.slice(6).trim();
    else if (line.startsWith('data:')) data += line.slice(5).trim();
  }
  if (!data) return;
  let payload;
  try { payload = JSON.parse(data); } catch (_) { return; }
  switch (name) {
    case 'detection': {
      const detection = payload.detection;
      addDetection(detection, payload.watchlist_hit || state.hitIDs.has(detection.message_id), true);
      const hour = new Date(detection.received_at || Date.now());
      hour.setMinutes(0, 0, 0);
      state.hourly.set(hour.getTime(), (state.hourly.get(hour.getTime()) || 0) + 1);
      const camera = state.cameras.get(detection.camera_id);
      if (camera) { camera.last_detection = detection; camera.last_seen = detection.received_at; scheduleCameras(); } else refreshCamera(detection.camera_id);
      scheduleChart();
      updateFigures();
      updateEmpty();
      break;
    }
    case 'alert':
      addAlert(payload, true);
      if (payload.kind === 'watchlist_hit') { state.hitsToday += 1; rememberHit(payload); updateFigures(); }
      updateEmpty();
      break;
    case 'camera':
      refreshCamera(payload.camera_id);
      break;
    default:
      break;
  }
}

function setLive(mode) {
  const badge = $('live-status');
  badge.className = `live-status ${mode}`;
  $('live-text').textContent = mode === 'live' ? 'Live' : mode === 'down' ? 'Reconnecting' : 'Connecting';
}

// MARK: Rendering

function plates(detection) {
  const data = detection.detection_data || {};
  return Array.isArray(data.plates) ? data.plates : [];
}
function vehicleText(detection) {
  const data = detection.detection_data || {};
  const vehicle = Array.isArray(data.vehicles) && data.vehicles.length ? data.vehicles[0] : null;
  if (!vehicle) return '';
  const words = [vehicle.color, vehicle.brand, vehicle.model].filter(Boolean).join(' ');
  const kind = vehicle.vehicle_type || vehicle.vehicle_class;
  return [words, kind, vehicle.year].filter(Boolean).join(' · ');
}
function confidenceOf(detection) {
  const data = detection.detection_data || {};
  if (typeof data.confidence_score === 'number') return data.confidence_score;
  const values = plates(detection).map((p) => p.confidence).filter((c) => typeof c === 'number');
  return values.length ? Math.max(...values) : null;
}
function confidenceNode(value) {
  const wrap = el('span', 'confidence');
  if (value === null) { wrap.textContent = '—'; return wrap; }
  const bar = el('span', `confidence-bar ${value >= 0.85 ? '' : value >= 0.7 ? 'medium' : 'low'}`);
  const fill = el('span');
  fill.style.width = `${Math.round(Math.max(0, Math.min(1, value)) * 100)}%`;
  bar.append(fill);
  wrap.append(bar, el('span', null, `${Math.round(value * 100)}%`));
  return wrap;
}

function addDetection(detection, hit, fresh) {
  if (!detection || state.feedIDs.has(detection.message_id)) return;
  state.feedIDs.add(detection.message_id);
  const row = el('li', `detection${fresh ? ' new' : ''}`);
  row.dataset.messageId = detection.message_id;
  const plateBox = el('div', 'plates');
  const list = plates(detection);
  for (const plate of list.length ? list : [{ plate_number: '?' }]) {
    const node = el('span', 'plate', plate.plate_number);
    node.dataset.plate = normalizePlate(plate.plate_number);
    plateBox.append(node);
  }
  const main = el('div', 'detection-main');
  const where = el('div', 'detection-where');
  where.append(el('span', 'camera-id', detection.camera_id), el('span', 'sep', '·'), el('span', 'checkpoint-id', detection.checkpoint_id));
  main.append(where, el('div', 'detection-vehicle', vehicleText(detection) || (plates(detection)[0] || {}).country || ''));
  const side = el('div', 'detection-side');
  side.append(el('span', 'detection-time', formatTime(detection.timestamp || detection.received_at)), confidenceNode(confidenceOf(detection)));
  row.append(plateBox, main, side);
  if (hit) markHit(row, state.hitIDs.get(detection.message_id));
  const feed = $('feed');
  feed.prepend(row);
  while (feed.children.length > FEED_MAX) {
    const last = feed.lastElementChild;
    state.feedIDs.delete(last.dataset.messageId);
    last.remove();
  }
}

function markHit(row, reason) {
  row.classList.add('hit');
  const where = row.querySelector('.detection-where');
  if (where && !where.querySelector('.hit-badge')) {
    const badge = el('span', 'hit-badge', 'WATCH-LIST');
    if (reason) badge.title = reason;
    where.prepend(badge);
  }
}

function addAlert(alert, fresh) {
  const row = el('li', `alert ${alert.level}${fresh ? ' new' : ''}`);
  row.dataset.kind = alert.kind;
  const top = el('div', 'alert-top');
  top.append(el('span', 'alert-level', `${alert.level} · ${String(alert.kind).replace(/_/g, ' ')}`), el('span', null, formatTime(alert.timestamp)));
  row.append(top, el('div', 'alert-message', alert.message));
  const list = $('alerts');
  list.prepend(row);
  while (list.children.length > ALERTS_MAX) list.lastElementChild.remove();
}

function metric(label, value, hot) {
  const node = el('div', 'metric');
  node.append(el('span', `metric-value${hot ? ' hot' : ''}`, value), el('span', 'metric-label', label));
  return node;
}

/// One card per camera, made once and brought up to date in place (buttons keep focus and answers stay).
function cameraCard(id) {
  const container = $('cameras');
  let card = container.querySelector(`.camera[data-camera="${CSS.escape(id)}"]`);
  if (card) return card;
  card = el('article', 'camera');
  card.dataset.camera = id;
  const head = el('div', 'camera-head');
  head.append(el('span', 'state-dot'), el('span', 'camera-name', id), el('span', 'camera-health'), el('span', 'camera-checkpoint'));
  const actions = el('div', 'camera-actions');
  const restart = el('button', 'secondary restart', 'Restart');
  restart.addEventListener('click', () => sendCommand(id, 'restart_camera', card));
  const health = el('button', 'secondary health', 'Health');
  health.addEventListener('click', () => requestHealth(id, card));
  const configure = el('button', 'secondary configure', 'Config');
  configure.title = 'Configure the camera';
  configure.addEventListener('click', () => { const camera = state.cameras.get(id); if (camera) openConfiguration(camera); });
  actions.append(restart, health, configure);
  card.append(head, el('div', 'camera-metrics'), el('div', 'camera-last'), actions, el('div', 'camera-answer'));
  return card;
}

function renderCameras() {
  const container = $('cameras');
  const cameras = [...state.cameras.values()].sort((a, b) => a.camera_id.localeCompare(b.camera_id));
  const number = (v, unit) => (typeof v === 'number' ? `${Math.round(v)}${unit}` : '—');
  cameras.forEach((camera, index) => {
    const card = cameraCard(camera.camera_id);
    const online = camera.online === true;
    card.classList.toggle('offline', camera.online === false);
    card.querySelector('.state-dot').className = `state-dot ${online ? 'online' : camera.online === false ? 'offline' : ''}`;
    card.querySelector('.camera-checkpoint').textContent = camera.checkpoint_id || '';
    const health = card.querySelector('.camera-health');
    const status = camera.online === false ? 'offline' : camera.health_status && camera.health_status !== 'healthy' ? camera.health_status : '';
    health.textContent = status;
    health.className = `camera-health ${status}`;
    health.title = (camera.problems || []).join(', ');
    const details = (camera.health && camera.health.health_details) || {};
    card.querySelector('.camera-metrics').replaceChildren(
      metric('CPU', number(details.cpu_usage, '%'), details.cpu_usage > 85),
      metric('Mem', number(details.memory_usage, '%'), details.memory_usage > 90),
      metric('Temp', number(details.temperature, '°'), details.temperature > 70),
      metric('Uptime', duration(details.uptime_seconds), false),
    );
    const last = card.querySelector('.camera-last');
    if (camera.last_detection) {
      const plate = plates(camera.last_detection)[0];
      last.replaceChildren(el('span', 'plate plate-small', plate ? plate.plate_number : '?'), el('span', null, ago(camera.last_detection.received_at)));
    } else {
      last.replaceChildren(el('span', null, online ? 'online, no detection yet' : `last seen ${ago(camera.last_seen)}`));
    }
    if (container.children[index] !== card) container.insertBefore(card, container.children[index] || null);
  });
  for (const card of [...container.querySelectorAll('.camera')]) if (!state.cameras.has(card.dataset.camera)) card.remove();
  $('cameras-note').textContent = cameras.length ? `${cameras.filter((c) => c.online === true).length} of ${cameras.length} online` : '';
  updateFigures();
  updateEmpty();
}

async function sendCommand(cameraID, command, card) {
  const answer = card.querySelector('.camera-answer');
  answer.className = 'camera-answer';
  answer.textContent = `${command}: waiting for the camera…`;
  try {
    const response = await api('POST', `/api/cameras/${encodeURIComponent(cameraID)}/control`, { command, timeout_seconds: 10 });
    const reply = answer;
    reply.className = `camera-answer ${response.status === 'ok' ? 'ok' : 'error'}`;
    const result = response.result && (response.result.error || response.result.message);
    reply.textContent = `${command}: ${response.status}${result ? ` (${result})` : ''} · ${formatTime(new Date().toISOString())}`;
  } catch (error) {
    const reply = answer;
    reply.className = 'camera-answer error';
    reply.textContent = error.status === 504 ? `${command}: no answer within 10 s` : `${command}: ${error.message}`;
  }
}

async function requestHealth(cameraID, card) {
  const answer = card.querySelector('.camera-answer');
  try {
    await api('POST', `/api/cameras/${encodeURIComponent(cameraID)}/health/request`);
    answer.className = 'camera-answer ok';
    answer.textContent = `health requested · ${formatTime(new Date().toISOString())}`;
  } catch (error) {
    answer.className = 'camera-answer error';
    answer.textContent = `health: ${error.message}`;
  }
}

function openConfiguration(camera) {
  const dialog = $('config-dialog');
  $('config-camera').textContent = camera.camera_id;
  dialog.dataset.camera = camera.camera_id;
  const desired = camera.config && camera.config.desired;
  const reported = camera.config && camera.config.reported;
  const source = desired || reported;
  $('config-type').value = (source && source.config_type) || 'detection_settings';
  $('config-data').value = JSON.stringify((source && source.config_data) || { detection_interval: 1000, confidence_threshold: 0.8 }, null, 2);
  $('config-reported').textContent = reported ? `The camera reports ${JSON.stringify(reported.config_data)} (${ago(camera.config.reported_at)}).` : 'The camera has not reported a configuration yet.';
  $('config-error').textContent = '';
  dialog.showModal();
}

async function saveConfiguration(event) {
  event.preventDefault();
  const dialog = $('config-dialog');
  let data;
  try { data = JSON.parse($('config-data').value); } catch (error) { $('config-error').textContent = `config_data is not JSON: ${error.message}`; return; }
  try {
    await api('PUT', `/api/cameras/${encodeURIComponent(dialog.dataset.camera)}/config`, { config_type: $('config-type').value, config_data: data });
    dialog.close();
    refreshCamera(dialog.dataset.camera);
  } catch (error) {
    $('config-error').textContent = error.message;
  }
}

// MARK: Chart

let camerasTimer = null;
function scheduleCameras() {
  if (camerasTimer) return;
  camerasTimer = setTimeout(() => { camerasTimer = null; renderCameras(); }, 400);
}

let chartTimer = null;
function scheduleChart() {
  if (chartTimer) return;
  chartTimer = setTimeout(() => { chartTimer = null; renderChart(); }, 500);
}

function renderChart() {
  const container = $('chart');
  const width = Math.max(320, container.clientWidth || 600);
  const height = Math.max(120, container.clientHeight || 180);
  const now = new Date();
  now.setMinutes(0, 0, 0);
  const hours = [];
  for (let i = 23; i >= 0; i--) hours.push(now.getTime() - i * 3600 * 1000);
  const values = hours.map((h) => state.hourly.get(h) || 0);
  const max = Math.max(1, ...values);
  const left = 34, bottom = 22, top = 8, right = 6;
  const plotW = width - left - right, plotH = height - top - bottom;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  const add = (name, attributes, text) => {
    const node = document.createElementNS(ns, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  const step = niceStep(max);
  for (let v = 0; v <= max; v += step) {
    const y = top + plotH - (v / max) * plotH;
    add('line', { x1: left, x2: width - right, y1: y, y2: y, class: 'grid' });
    add('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', class: 'axis' }, String(v));
  }
  const slot = plotW / hours.length;
  hours.forEach((hour, index) => {
    const value = values[index];
    const h = (value / max) * plotH;
    const bar = add('rect', { x: left + index * slot + slot * 0.15, y: top + plotH - h, width: slot * 0.7, height: Math.max(h, value ? 1 : 0), rx: 2, class: `bar${index === hours.length - 1 ? ' now' : ''}` });
    const date = new Date(hour);
    const title = document.createElementNS(ns, 'title');
    title.textContent = `${pad(date.getHours())}:00 — ${value} detections`;
    bar.append(title);
    if (index % 3 === 2 || index === hours.length - 1) add('text', { x: left + index * slot + slot / 2, y: height - 6, 'text-anchor': 'middle', class: 'axis' }, `${pad(date.getHours())}h`);
  });
  container.replaceChildren(svg);
}

function niceStep(max) {
  const rough = max / 4;
  const magnitude = Math.pow(10, Math.floor(Math.log10(Math.max(1, rough))));
  for (const factor of [1, 2, 5, 10]) if (factor * magnitude >= rough) return Math.max(1, factor * magnitude);
  return Math.max(1, 10 * magnitude);
}

// MARK: Figures

function updateFigures() {
  const hour = new Date();
  hour.setMinutes(0, 0, 0);
  $('figure-hour').textContent = String(state.hourly.get(hour.getTime()) || 0);
  const cameras = [...state.cameras.values()];
  $('figure-cameras').textContent = `${cameras.filter((c) => c.online === true).length}/${cameras.length}`;
  $('figure-hits').textContent = String(state.hitsToday);
  $('figure-hits').classList.toggle('nonzero', state.hitsToday > 0);
}

function updateEmpty() {
  $('feed-empty').hidden = $('feed').children.length > 0;
  $('alerts-empty').hidden = $('alerts').children.length > 0;
  $('cameras-empty').hidden = state.cameras.size > 0;
}

// MARK: Search

async function search(event, more) {
  if (event) event.preventDefault();
  const plate = $('search-plate').value.trim();
  const params = new URLSearchParams({ limit: '50' });
  if (plate) params.set('plate', plate);
  if ($('search-fuzzy').checked) params.set('fuzzy', 'true');
  if ($('search-camera').value.trim()) params.set('camera', $('search-camera').value.trim());
  if (more && state.searchCursor) params.set('cursor', state.searchCursor);
  $('search-error').textContent = '';
  try {
    const page = await api('GET', `/api/detections?${params}`);
    const body = $('search-results');
    if (!more) body.replaceChildren();
    for (const detection of page.items) {
      const row = el('tr', state.hitIDs.has(detection.message_id) ? 'hit' : '');
      const plateCell = el('td');
      for (const p of plates(detection)) plateCell.append(el('span', 'plate plate-small', p.plate_number));
      const confidence = confidenceOf(detection);
      row.append(
        plateCell,
        el('td', null, formatTime(detection.timestamp)),
        el('td', null, detection.camera_id),
        el('td', null, detection.checkpoint_id),
        el('td', null, confidence === null ? '—' : `${Math.round(confidence * 100)}%`),
        el('td', null, vehicleText(detection)),
      );
      body.append(row);
    }
    if (!more && page.items.length === 0) {
      const row = el('tr');
      const cell = el('td', 'empty', 'No detection matches.');
      cell.colSpan = 6;
      row.append(cell);
      body.append(row);
    }
    state.searchCursor = page.next_cursor;
    $('search-more').hidden = !page.next_cursor;
  } catch (error) {
    $('search-error').textContent = error.message;
  }
}

// MARK: Watch-list

function renderWatchlist() {
  const body = $('watch-entries');
  body.replaceChildren();
  for (const entry of state.watchlist) {
    const row = el('tr');
    const remove = el('button', 'secondary', 'Remove');
    remove.addEventListener('click', async () => {
      try { await api('DELETE', `/api/watchlist/${encodeURIComponent(entry.id)}`); await loadWatchlist(); } catch (error) { $('watch-error').textContent = error.message; }
    });
    const plateCell = el('td');
    plateCell.append(el('span', 'plate plate-small', entry.plate));
    const action = el('td');
    action.append(remove);
    row.append(plateCell, el('td', `level ${entry.level}`, entry.level), el('td', null, entry.reason || '—'), el('td', null, entry.expires_at ? formatTime(entry.expires_at) : 'never'), action);
    body.append(row);
  }
  if (!state.watchlist.length) {
    const row = el('tr');
    const cell = el('td', 'empty', 'The watch-list is empty.');
    cell.colSpan = 5;
    row.append(cell);
    body.append(row);
  }
}

async function addWatchEntry(event) {
  event.preventDefault();
  const entry = { plate: $('watch-plate').value.trim(), reason: $('watch-reason').value.trim(), level: $('watch-level').value };
  if ($('watch-expires').value) entry.expires_at = new Date($('watch-expires').value).toISOString();
  $('watch-error').textContent = '';
  try {
    await api('POST', '/api/watchlist', entry);
    $('watch-form').reset();
    await loadWatchlist();
  } catch (error) {
    $('watch-error').textContent = error.message;
  }
}

// MARK: Chrome

function showView(name) {
  for (const tab of document.querySelectorAll('.tab')) tab.classList.toggle('active', tab.dataset.view === name);
  for (const view of ['live', 'search', 'watchlist']) $(`view-${view}`).hidden = view !== name;
  if (name === 'live') renderChart();
  location.hash = name === 'live' ? '' : name;
}

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  localStorage.setItem('databus.theme', theme);
}

function tick() {
  const now = new Date();
  $('clock').textContent = `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}`;
}

document.addEventListener('DOMContentLoaded', () => {
  const theme = new URLSearchParams(location.search).get('theme') || localStorage.getItem('databus.theme') || (matchMedia('(prefers-color-scheme: light)').matches ? 'light' : 'dark');
  applyTheme(theme);
  $('theme-toggle').addEventListener('click', () => applyTheme(document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark'));
  $('logout').addEventListener('click', () => signOut(''));
  $('login-form').addEventListener('submit', (event) => { event.preventDefault(); signIn($('token-input').value); });
  for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => showView(tab.dataset.view));
  $('search-form').addEventListener('submit', (event) => search(event, false));
  $('search-more').addEventListener('click', () => search(null, true));
  $('watch-form').addEventListener('submit', addWatchEntry);
  $('config-form').addEventListener('submit', saveConfiguration);
  $('config-cancel').addEventListener('click', () => $('config-dialog').close());
  window.addEventListener('resize', scheduleChart);
  tick();
  setInterval(tick, 1000);
  setInterval(() => { if (state.token && !$('app').hidden) { renderCameras(); } }, 15000);
  setInterval(() => { if (state.token && !$('app').hidden) loadStats().catch(() => {}); }, 60000);
  if (state.token) {
    signIn(state.token).then(() => { if (location.hash.length > 1) showView(location.hash.slice(1)); });
  } else {
    showLogin('');
  }
});
