import NIOCore

/// A client's IP address and port kept inline (24 bytes), for the log lines of a connection
/// that is parked: a `SocketAddress` is a reference to an object of its own (64 bytes of
/// memory for IPv4, 80 for IPv6), which thousands of parked connections would each keep.
struct PeerAddress: Sendable, Equatable {
    /// The address in network order: IPv4 in the first four bytes.
    private var high: UInt64 = 0
    private var low: UInt64 = 0
    private var port: UInt16
    private var isIPv6: Bool

    /// nil for an address that is not IP (a Unix socket).
    init?(_ address: SocketAddress) {
        guard let port = address.port else { return nil }
        self.port = UInt16(truncatingIfNeeded: port)
        switch address {
        case .v4(let v4):
            isIPv6 = false
            withUnsafeMutableBytes(of: &high) { bytes in
                withUnsafeBytes(of: v4.address.sin_addr) { bytes.copyMemory(from: $0) }
            }
        case .v6(let v6):
            isIPv6 = true
            withUnsafeBytes(of: v6.address.sin6_addr) { address in
                withUnsafeMutableBytes(of: &high) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: address[0..<8])) }
                withUnsafeMutableBytes(of: &low) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: address[8..<16])) }
            }
        case .unixDomainSocket:
            return nil
        }
    }

    /// The address again, as SwiftNIO spells it.
    var socketAddress: SocketAddress? {
        var packed = ByteBuffer()
        withUnsafeBytes(of: high) { _ = packed.writeBytes(isIPv6 ? $0[0..<8] : $0[0..<4]) }
        if isIPv6 { withUnsafeBytes(of: low) { _ = packed.writeBytes($0) } }
        return try? SocketAddress(packedIPAddress: packed, port: Int(port))
    }
}
