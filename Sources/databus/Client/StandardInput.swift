import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Standard input as raw bytes: all of it (`-s`), or line by line as it arrives (`-l`).
enum StandardInput {
    /// Reads standard input to its end.
    static func readAll() throws -> [UInt8] {
        var reader = FileDescriptorReader(descriptor: 0)
        return try reader.readToEnd()
    }

    /// The lines of standard input as they arrive, without their `\n` (a `\r` stays, as in
    /// mosquitto_pub); a last line without `\n` counts too.
    ///
    /// A thread of its own reads, at most `buffered` lines ahead of the consumer, so a fast
    /// producer does not fill memory while the broker is slow or away.
    static func lines(buffered: Int = 1_000) -> InputLines {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: [UInt8].self)
        let room = DispatchSemaphore(value: buffered)
        let thread = Thread {
            var reader = FileDescriptorReader(descriptor: 0)
            do {
                while let line = try reader.readLine() {
                    room.wait()
                    if case .terminated = continuation.yield(line) { return }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        thread.start()
        return InputLines(stream: stream, room: room)
    }
}

/// Lines read ahead by a thread; taking one makes room for the next.
struct InputLines: AsyncSequence {
    typealias Element = [UInt8]

    let stream: AsyncThrowingStream<[UInt8], any Error>
    let room: DispatchSemaphore

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<[UInt8], any Error>.AsyncIterator
        let room: DispatchSemaphore

        mutating func next() async throws -> [UInt8]? {
            let line = try await base.next()
            if line != nil { room.signal() }
            return line
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: stream.makeAsyncIterator(), room: room) }
}

/// Reads a file descriptor in blocks; `readLine` splits at `\n`.
struct FileDescriptorReader {
    struct ReadError: Error, CustomStringConvertible {
        let description: String
    }

    let descriptor: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    private var ended = false

    init(descriptor: Int32) { self.descriptor = descriptor }

    /// Reads once; `false` at the end of input.
    private mutating func fill() throws -> Bool {
        guard !ended else { return false }
        if start > 0 {
            buffer.removeFirst(start)
            start = 0
        }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count > 0 {
                buffer.append(contentsOf: chunk[0..<count])
                return true
            }
            if count == 0 {
                ended = true
                return false
            }
            if errno != EINTR { throw ReadError(description: "cannot read standard input: \(String(cString: strerror(errno)))") }
        }
    }

    mutating func readToEnd() throws -> [UInt8] {
        while try fill() {}
        return Array(buffer[start...])
    }

    mutating func readLine() throws -> [UInt8]? {
        var searchFrom = start
        while true {
            if let newline = buffer[searchFrom...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                return line
            }
            let scanned = buffer.count - start
            guard try fill() else {
                guard start < buffer.count else { return nil }
                let line = Array(buffer[start...])
                start = buffer.count
                return line
            }
            searchFrom = start + scanned
        }
    }
}
