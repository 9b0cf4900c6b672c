import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a file, or standard input for `-`, on a thread of its own with blocking reads, so a
/// slow or never-ending input (a pipe from a live pipeline) never holds up the event loops.
enum BlockingInput {
    /// Opens `path` (`-` is standard input) and hands `body` each chunk read until the end of
    /// the input or until `body` returns false. `finished` gets the error that ended it, if any.
    static func read(
        _ path: String,
        chunkSize: Int = 64 * 1024,
        body: @escaping @Sendable ([UInt8]) -> Bool,
        finished: @escaping @Sendable ((any Error)?) -> Void
    ) throws(PipelineInputError) {
        let descriptor: Int32
        if path == "-" {
            descriptor = 0
        } else {
            descriptor = open(path, O_RDONLY)
            guard descriptor >= 0 else { throw PipelineInputError("cannot open \(path): \(String(cString: strerror(errno)))") }
        }
        let thread = Thread {
            defer { if descriptor != 0 { close(descriptor) } }
            var chunk = [UInt8](repeating: 0, count: chunkSize)
            while true {
                let count = chunk.withUnsafeMutableBytes { Foundation.read(descriptor, $0.baseAddress, chunkSize) }
                if count < 0 {
                    if errno == EINTR { continue }
                    finished(PipelineInputError("reading \(path): \(String(cString: strerror(errno)))"))
                    return
                }
                if count == 0 { break }
                guard body(Array(chunk[0..<count])) else { break }
            }
            finished(nil)
        }
        thread.name = "databus-input"
        thread.start()
    }

    /// The lines of `path` (`-` is standard input), without their line ends; empty lines are skipped.
    static func lines(_ path: String) throws(PipelineInputError) -> AsyncThrowingStream<String, any Error> {
        let (stream, continuation) = AsyncThrowingStream<String, any Error>.makeStream()
        let pending = NIOLockedValueBox<[UInt8]>([])
        try read(
            path,
            body: { chunk in
                var lines: [String] = []
                pending.withLockedValue { pending in
                    var start = pending.count
                    pending.append(contentsOf: chunk)
                    var lineStart = 0
                    while let newline = pending[start...].firstIndex(of: 0x0A) {
                        var end = newline
                        if end > lineStart && pending[end - 1] == 0x0D { end -= 1 }
                        if end > lineStart { lines.append(String(decoding: pending[lineStart..<end], as: UTF8.self)) }
                        lineStart = newline + 1
                        start = lineStart
                    }
                    pending.removeFirst(lineStart)
                }
                for line in lines {
                    if case .terminated = continuation.yield(line) { return false }
                }
                return true
            },
            finished: { error in
                let rest = pending.withLockedValue { String(decoding: $0, as: UTF8.self) }
                if !rest.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { continuation.yield(rest) }
                continuation.finish(throwing: error)
            }
        )
        return stream
    }
}

/// An input that cannot be read.
public struct PipelineInputError: Error, Sendable, Hashable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Where the JPEG of each frame comes from.
public protocol FrameSource: Sendable {
    /// The JPEG of frame `id`, or `nil` when there is none.
    func frame(_ id: Int) async -> [UInt8]?
}

/// Frames as `{frame_id}.jpg` files in a folder.
public struct FolderFrameSource: FrameSource {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    public func frame(_ id: Int) async -> [UInt8]? {
        let path = (directory as NSString).appendingPathComponent("\(id).jpg")
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return [UInt8](data)
    }
}

/// Frames cut from an MJPEG stream: the n-th JPEG (from 0) is frame n.
///
/// A reader thread keeps at most `capacity` frames ahead of the frame last asked for, so a long
/// video is never read into memory whole; frames below the one asked for are dropped unread.
public final class MJPEGFrameSource: FrameSource, @unchecked Sendable {
    private struct State {
        var frames: [Int: [UInt8]] = [:]
        var nextIndex = 0
        /// The lowest frame still wanted.
        var wanted = 0
        var ended = false
        var error: (any Error)?
        var waiters: [(id: Int, continuation: CheckedContinuation<[UInt8]?, Never>)] = []
    }

    private let lock = ConditionLock(value: 0)
    private var state = State()
    private let capacity: Int

    /// Starts reading `path` (`-` for standard input).
    public init(path: String, capacity: Int = 64) throws(PipelineInputError) {
        self.capacity = capacity
        let splitter = NIOLockedValueBox(MJPEGSplitter())
        try BlockingInput.read(
            path,
            body: { [self] chunk in
                do {
                    let images = try splitter.withLockedValue { try $0.append(chunk) }
                    for image in images { self.put(image) }
                    return true
                } catch {
                    self.end(error)
                    return false
                }
            },
            finished: { [self] error in
                do {
                    try splitter.withLockedValue { try $0.finish() }
                    self.end(error)
                } catch {
                    self.end(error)
                }
            }
        )
    }

    /// Why the stream ended early, if it did.
    public var error: (any Error)? {
        lock.lock()
        defer { lock.unlock() }
        return state.error
    }

    private func put(_ image: [UInt8]) {
        lock.lock()
        // Wait while far enough ahead of what is asked for.
        while state.nextIndex - state.wanted >= capacity && !state.ended {
            lock.unlock(withValue: 0)
            lock.lock(whenValue: 1)
        }
        let index = state.nextIndex
        state.nextIndex += 1
        var resumed: [(CheckedContinuation<[UInt8]?, Never>, [UInt8]?)] = []
        if index >= state.wanted {
            if let position = state.waiters.firstIndex(where: { $0.id == index }) {
                resumed.append((state.waiters.remove(at: position).continuation, image))
            } else {
                state.frames[index] = image
            }
        }
        // Waiters for frames the stream has passed without finding them get nothing.
        state.waiters.removeAll { waiter in
            guard waiter.id < state.nextIndex else { return false }
            resumed.append((waiter.continuation, nil))
            return true
        }
        lock.unlock(withValue: 0)
        for (continuation, value) in resumed { continuation.resume(returning: value) }
    }

    private func end(_ error: (any Error)?) {
        lock.lock()
        state.ended = true
        if state.error == nil { state.error = error }
        let waiters = state.waiters
        state.waiters = []
        lock.unlock(withValue: 1)
        for waiter in waiters { waiter.continuation.resume(returning: nil) }
    }

    public func frame(_ id: Int) async -> [UInt8]? {
        await withCheckedContinuation { (continuation: CheckedContinuation<[UInt8]?, Never>) in
            lock.lock()
            if id >= state.wanted {
                state.wanted = id
                state.frames = state.frames.filter { $0.key >= id }
            }
            if let image = state.frames.removeValue(forKey: id) {
                lock.unlock(withValue: 1)
                continuation.resume(returning: image)
            } else if state.ended || id < state.nextIndex {
                lock.unlock(withValue: 1)
                continuation.resume(returning: nil)
            } else {
                state.waiters.append((id, continuation))
                lock.unlock(withValue: 1)
            }
        }
    }
}

/// The inputs of the edge agents.
public enum EdgeInput {
    /// The lines of `path` (`-` is standard input) as they arrive, read on a thread of their own;
    /// empty lines are skipped.
    public static func lines(_ path: String) throws(PipelineInputError) -> AsyncThrowingStream<String, any Error> {
        try BlockingInput.lines(path)
    }
}
