/// The locks of the broker and the one order in which they may be taken.
///
/// Every event loop routes, delivers and acknowledges at once, so shared state is behind
/// locks. A thread that holds a lock may take only locks further down this list, never one
/// above it (and never a second session's lock):
///
/// 1. `SessionRegistry.sessions` — the sessions by client identifier. Held while a takeover
///    closes the old connection's outlet (`Session.disconnectClient`).
/// 2. `SubscriptionRouter.lock` (readers-writer) — the subscription tries. Routing holds the
///    read lock while `SharedGroup.pick` asks members whether they are connected (their
///    session lock); nothing holds a session lock while taking the router's.
/// 3. `Session.lock` — one per session: its outbound messages (in flight, queued, counted in
///    the store), subscriptions, QoS 2 identifiers, access, identity, drop counts and the
///    publishers waiting for it to drain. Held while packets are handed to the outlet (so their
///    order on the wire is the order the session decided) and while store changes are queued;
///    log lines, reads of the store's backlog and wake-ups of waiting publishers happen after
///    it is released. The store's writer thread takes a session's lock inside a transaction
///    (to give copies read back from the store their packet identifiers); nothing waits for the
///    database while holding a session's lock.
/// 4. Leaves, which take no other lock while held:
///    - `SessionOutlet.lock` — packets waiting for the connection's event loop;
///    - `SQLiteBrokerStore.pending` — operations waiting for the next group commit (completions
///      run on the store's thread after it is released);
///    - `RetainedMessageStore.messages`, `ConfigurationInForce`, `SecurityInForce`,
///      `SessionRegistry.environmentBox`, `ConnectionRegistry`, `LoginThrottle`,
///      `BrokerMetrics.exported`.
///
/// A bridge (``Bridge``) takes no lock of its own: its rules, connection and timers live on
/// one event loop, and other threads read only its atomic counters. It calls into its session,
/// the router and the distributor holding nothing, as a connection does. ``BridgeSet`` is a leaf.
///
/// A connection's own state (its ``ConnectionStateMachine``) needs no lock: only its event loop
/// touches it; other threads reach it through `eventLoop.execute` (close requests, publishers
/// woken when a subscriber drained).
///
/// Sessions and outlets keep their lock inline (``InlineLock``); the others are `NIOLock`s.
///
/// Counters (`BrokerStatistics`) are relaxed atomics and may be touched under any lock.
/// Nothing blocks on I/O while holding a lock: writes go through the outlet's event loop,
/// disk writes through the store's writer thread.
enum LockOrder {}
