import DatabusTestSupport
import Foundation
import MQTTCore
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// A client socket of the test's own (IPv4 or IPv6, from a chosen source address when
/// given) that can half-close and reports its own port; read without blocking a thread
/// (polled), used by one task at a time.
final class PlainSocket: @unchecked Sendable {
    let descriptor: CInt
    private var received = ByteBuffer()
    private var decoder: MQTTPacketDecoder
    private let version: MQTTProtocolVersion
    private var closed = false

    private init(descriptor: CInt, version: MQTTProtocolVersion) {
        self.descriptor = descriptor
        self.version = version
        self.decoder = MQTTPacketDecoder(version: version)
    }

    /// Connects to `host` (an IP address) and `port`, from `source` (an IP address; the port
    /// chosen by the system) when given.
    static func connect(host: String, port: Int, from source: String? = nil, version: MQTTProtocolVersion = .v5) throws -> PlainSocket {
        let address = try SocketAddress(ipAddress: host, port: port)
        let descriptor = socket(address.protocol.rawValue, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw InteropError("socket: \(errno)") }
        var bound: CInt = 0
        if let source {
            let local = try SocketAddress(ipAddress: source, port: 0)
            bound = local.withSockAddr { pointer, size in bind(descriptor, pointer, socklen_t(size)) }
        }
        let connected = bound == 0 ? address.withSockAddr { pointer, size in Glibc.connect(descriptor, pointer, socklen_t(size)) } : -1
        guard connected == 0 else {
            let code = errno
            Glibc.close(descriptor)
            throw InteropError("connect to \(host):\(port)\(source.map { " from \($0)" } ?? ""): \(String(cString: strerror(code)))")
        }
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        return PlainSocket(descriptor: descriptor, version: version)
    }

    /// The port this end of the connection has.
    var localPort: Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) } }
        if Int32(storage.ss_family) == AF_INET6 {
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
        }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    func send(_ packet: MQTTPacket) throws {
        var buffer = ByteBuffer()
        try packet.write(to: &buffer, version: version)
        try send(bytes: Array(buffer.readableBytesView))
    }

    func send(bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
            if sent < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                throw InteropError("send: \(String(cString: strerror(errno)))")
            }
            offset += sent
        }
    }

    /// Reads what is there without waiting: false at end of stream.
    private func readAvailable() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, CInt(MSG_DONTWAIT)) }
            if count > 0 {
                received.writeBytes(chunk[0..<count])
                continue
            }
            if count == 0 { return false }
            if errno == EAGAIN || errno == EINTR { return true }
            throw InteropError("recv: \(String(cString: strerror(errno)))")
        }
    }

    /// The next packet from the broker.
    func receive(within seconds: Double = 5) async throws -> MQTTPacket {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while true {
            if let packet = try decoder.decode(buffer: &received) { return packet }
            let open = try readAvailable()
            if let packet = try decoder.decode(buffer: &received) { return packet }
            guard open else { throw InteropError("connection closed") }
            guard ContinuousClock.now < deadline else { throw InteropError("no packet within \(seconds) s") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Waits for the end of stream (anything received before it is ignored).
    func expectClosed(within seconds: Double) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while try readAvailable() {
            guard ContinuousClock.now < deadline else { throw InteropError("still open after \(seconds) s") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// GET `path` over HTTP/1.1; the body (as long as Content-Length says).
    func httpGet(_ path: String) async throws -> String {
        try send(bytes: Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            let open = try readAvailable()
            let text = String(decoding: received.readableBytesView, as: UTF8.self)
            if let end = text.range(of: "\r\n\r\n") {
                let head = text[..<end.lowerBound].lowercased()
                if let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
                    let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
                {
                    let body = Array(received.readableBytesView)[(text.utf8.distance(from: text.startIndex, to: end.upperBound))...]
                    if body.count >= length { return String(decoding: body.prefix(length), as: UTF8.self) }
                }
            }
            guard open else { throw InteropError("HTTP connection closed early") }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw InteropError("no HTTP answer")
    }

    func shutdownWrite() { _ = shutdown(descriptor, CInt(SHUT_WR)) }

    /// Closes with a reset (SO_LINGER 0) instead of a FIN.
    func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close()
    }

    /// Whether the other side has closed the connection whole (not only its output): bytes
    /// written to it are answered with a reset.
    func peerFullyClosed(within seconds: Double) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            let sent = [UInt8(0xC0), 0x00].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
            if sent < 0 && (errno == EPIPE || errno == ECONNRESET) { return true }
            var byte: UInt8 = 0
            let read = recv(descriptor, &byte, 1, CInt(MSG_DONTWAIT))
            if read < 0 && errno == ECONNRESET { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(descriptor)
    }

    deinit { close() }
}
