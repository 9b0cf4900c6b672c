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
/// 3. `Session.lock` — one per session: its queue, messages in flight, subscriptions, QoS 2
///    identifiers, access and identity. Held while packets are handed to the outlet (so their
///    order on the wire is the order the session decided) and while store changes are queued.
/// 4. Leaves, which take no other lock while held:
///    - `SessionOutlet.pending` — packets waiting for the connection's event loop;
///    - `SQLiteBrokerStore.pending` — operations waiting for the next group commit (completions
///      run on the store's thread after it is released);
///    - `RetainedMessageStore.messages`, `ConfigurationInForce`, `SecurityInForce`,
///      `ConnectionRegistry`, `LoginThrottle`, `BrokerMetrics.exported`.
///
/// Counters (`BrokerStatistics`) are relaxed atomics and may be touched under any lock.
/// Nothing blocks on I/O while holding a lock: writes go through the outlet's event loop,
/// disk writes through the store's writer thread.
enum LockOrder {}
