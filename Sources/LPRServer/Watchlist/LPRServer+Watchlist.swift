import Foundation
import LPRModel

extension LPRServer {
    /// The watch-list in force and its version.
    public func watchlist() -> (version: Int, entries: [WatchlistEntry]) {
        watchlistState.withLockedValue { ($0.version, $0.matcher.entries) }
    }

    /// Adds an entry (a new id when its own is empty) or replaces the one with its id. The change
    /// is in force for the next detection once this returns, and is published on `blacklist/updates`.
    /// - Returns: the entry as saved.
    @discardableResult
    public func saveWatchlistEntry(_ entry: WatchlistEntry) async throws -> WatchlistEntry {
        var entry = entry
        if entry.id.isEmpty { entry.id = Self.newID() }
        guard !PlateNormalizer.normalize(entry.plate).isEmpty else {
            throw MessageValidationError(path: "plate", reason: "has no letters or digits")
        }
        if let reason = FieldReader.unstorableTextReason(entry.plate, maximumBytes: FieldReader.maximumPlateBytes) {
            throw MessageValidationError(path: "plate", reason: reason)
        }
        _ = try await repository.saveWatchlistEntry(entry)
        try await loadWatchlist()
        await publishWatchlist()
        return entry
    }

    /// Removes an entry. - Returns: whether there was one.
    @discardableResult
    public func deleteWatchlistEntry(id: String) async throws -> Bool {
        guard try await repository.deleteWatchlistEntry(id: id) != nil else { return false }
        try await loadWatchlist()
        await publishWatchlist()
        return true
    }

    /// Reads the watch-list from the store and puts it in force.
    func loadWatchlist() async throws {
        let (version, entries) = try await repository.watchlist()
        let matcher = WatchlistMatcher(entries: entries, maximumDistance: configuration.watchlistMaximumDistance)
        watchlistState.withLockedValue { state in
            // Two loads racing: the newer version wins.
            if version >= state.version { state = (version, matcher) }
        }
    }

    /// Publishes the whole watch-list, retained, with its version.
    func publishWatchlist() async {
        let (version, entries) = watchlist()
        await publish(.blacklistUpdates, WatchlistUpdate(version: version, timestamp: Date(), entries: entries).json)
    }

    /// Another server changed the watch-list: reload when its version is newer than ours.
    func receiveWatchlistUpdate(payload: some Collection<UInt8>) async {
        guard !payload.isEmpty, let json = try? JSONObject.parse(payload), let version = json["version"]?.intValue else { return }
        guard version > watchlistState.withLockedValue({ $0.version }) else { return }
        do {
            try await loadWatchlist()
        } catch {
            metrics.error("store")
            await report(.error, "could not reload the watch-list", metadata: ["lpr.error": "\(error)"])
        }
    }
}
