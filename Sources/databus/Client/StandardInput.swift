import Foundation
import NIOCore

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
    /// Lines come in batches: every line a read brought in that is complete, at most
    /// `maximumLines` a batch, each a slice of the block read (no copy per line). A thread of
    /// its own reads, at most `readAhead` batches ahead of the consumer, so a fast producer
    /// does not fill memory while the broker is slow or away.
    static func lineBatches(maximumLines: Int = 256, readAhead: Int = 2) -> LineBatches {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: [ByteBuffer].self)
        let room = DispatchSemaphore(value: readAhead)
        let thread = Thread {
            var reader = LineBlockReader(descriptor: 0)
            do {
                while let lines = try reader.readLines() {
                    var start = 0
                    while start < lines.count {
                        let end = min(start + maximumLines, lines.count)
                        room.wait()
                        if case .terminated = continuation.yield(Array(lines[start..<end])) { return }
                        start = end
                    }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        thread.start()
        return LineBatches(stream: stream, room: room)
    }
}

/// Batches of lines read ahead by a thread; taking one makes room for another.
struct LineBatches: AsyncSequence {
    typealias Element = [ByteBuffer]

    let stream: AsyncThrowingStream<[ByteBuffer], any Error>
    let room: DispatchSemaphore

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<[ByteBuffer], any Error>.AsyncIterator
        let room: DispatchSemaphore

        mutating func next() async throws -> [ByteBuffer]? {
            let lines = try await base.next()
            if lines != nil { room.signal() }
            return lines
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: stream.makeAsyncIterator(), room: room) }
}

/// Reads a file descriptor in blocks and cuts each block's complete lines out as slices; a
/// line cut by the end of a block is carried into the next one.
struct LineBlockReader {
    let descriptor: Int32
    private var carried = ByteBuffer()
    private var ended = false
    static let blockSize = 65_536

    init(descriptor: Int32) { self.descriptor = descriptor }

    /// The complete lines of the next read (the last line without `\n` at the end of input);
    /// `nil` at the end of input.
    mutating func readLines() throws -> [ByteBuffer]? {
        while !ended {
            var block = ByteBuffer()
            block.reserveCapacity(Self.blockSize + carried.readableBytes)
            block.writeImmutableBuffer(carried)
            let searchFrom = carried.readableBytes
            carried = ByteBuffer()
            let count = try Self.readBlock(descriptor, into: &block)
            if count == 0 {
                ended = true
                guard block.readableBytes > 0 else { return nil }
                return [block]
            }
            var lines: [ByteBuffer] = []
            var lineStart = block.readerIndex
            let found = block.withUnsafeReadableBytes { bytes -> [Int] in
                var newlines: [Int] = []
                var index = searchFrom
                while index < bytes.count {
                    guard let pointer = memchr(bytes.baseAddress! + index, 0x0A, bytes.count - index) else { break }
                    let offset = bytes.baseAddress!.distance(to: UnsafeRawPointer(pointer))
                    newlines.append(offset)
                    index = offset + 1
                }
                return newlines
            }
            lines.reserveCapacity(found.count)
            for newline in found {
                lines.append(block.getSlice(at: lineStart, length: newline - lineStart)!)
                lineStart = newline + 1
            }
            if lineStart < block.writerIndex {
                carried = block.getSlice(at: lineStart, length: block.writerIndex - lineStart)!
            }
            if !lines.isEmpty { return lines }
        }
        return nil
    }

    private static func readBlock(_ descriptor: Int32, into block: inout ByteBuffer) throws -> Int {
        while true {
            var result = 0
            block.writeWithUnsafeMutableBytes(minimumWritableBytes: blockSize) { bytes in
                result = read(descriptor, bytes.baseAddress, bytes.count)
                return max(0, result)
            }
            if result >= 0 { return result }
            if errno == EINTR { continue }
            throw FileDescriptorReader.ReadError(description: "cannot read standard input: \(String(cString: strerror(errno)))")
        }
    }
}

/// Reads a file descriptor in blocks, to its end (`-s`).
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
}
