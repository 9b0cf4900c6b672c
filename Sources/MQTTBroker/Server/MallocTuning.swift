#if canImport(Glibc)
import CDatabusEpoll
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Sets glibc's malloc up for a broker with many idle connections, by running the executable
/// again with `GLIBC_TUNABLES` (glibc reads it only when a process starts).
///
/// Parked connections (``ParkingLot``) free their SwiftNIO channels, but with glibc's
/// defaults that memory stays resident: each thread's cache (tcache) hands chunks freed by
/// one thread's channels to objects another thread keeps, so no page of the arena the
/// channels came from ever empties; small chunks freed into the fast bins stay unmerged,
/// and when `malloc_trim` merges them into the top of a thread's arena nothing gives that
/// top back; and the trim threshold, which grows with every large block freed, keeps freed
/// heap tops. With `glibc.malloc.tcache_count=0`, `glibc.malloc.mxfast=0` and a fixed
/// `glibc.malloc.trim_threshold`, the parking lot's arena empties and is given back when the
/// connections park (10,000 idle connections: 1.20-1.27 KB each; with the larger parked
/// record of before, 1.46-1.53 KB, 1.67-1.86 KB with the fast bins, 3.85 KB with glibc's
/// defaults).
///
/// `DATABUS_MALLOC_TUNING=0` leaves malloc as it is; a `GLIBC_TUNABLES` that already sets
/// the tcache is left alone (it is the user's). A process in secure mode (setuid, file
/// capabilities), where glibc drops the tunables, runs as it is, as does one started through
/// the dynamic loader (`ld.so databus ...`, where /proc/self/exe is the loader); and the
/// executable runs again once at most (`DATABUS_MALLOC_TUNED` marks the second start).
public enum MallocTuning {
    static let tunables = "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0:glibc.malloc.trim_threshold=131072"
    /// Set for the executable's second start.
    private static let marker = "DATABUS_MALLOC_TUNED"

    /// Runs this executable again, with the same arguments, environment and process id, with
    /// the tunables added; returns only when that is not needed or not possible.
    public static func reexecuteIfNeeded() {
        #if os(Linux) && canImport(Glibc)
        if let off = getenv("DATABUS_MALLOC_TUNING"), String(cString: off) == "0" { return }
        // /proc/self/exe must be this executable: not when it was started through the loader.
        guard getenv(marker) == nil, databus_secure_mode() == 0, databus_started_as_program() != 0 else { return }
        let current = getenv("GLIBC_TUNABLES").map { String(cString: $0) } ?? ""
        guard let updated = tunablesAdding(to: current) else { return }
        setenv("GLIBC_TUNABLES", updated, 1)
        setenv(marker, "1", 1)
        let arguments = CommandLine.arguments
        var pointers: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        pointers.append(nil)
        execv("/proc/self/exe", pointers)
        // Not replaced (no /proc): go on with malloc as it is.
        for pointer in pointers { free(pointer) }
        if current.isEmpty { unsetenv("GLIBC_TUNABLES") } else { setenv("GLIBC_TUNABLES", current, 1) }
        unsetenv(marker)
        #endif
    }

    /// `current` with our tunables added, or nil when it sets the tcache already.
    static func tunablesAdding(to current: String) -> String? {
        guard !current.contains("glibc.malloc.tcache_count") else { return nil }
        return current.isEmpty ? tunables : current + ":" + tunables
    }
}
