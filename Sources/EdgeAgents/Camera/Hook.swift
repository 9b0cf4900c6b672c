import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How a hook's run ended.
public enum HookTermination: Sendable, Hashable {
    case exited(Int32)
    case signalled(Int32)
    /// Killed after running this many seconds.
    case timedOut(TimeInterval)
    case failedToStart(String)
}

/// What a hook's run produced.
public struct HookResult: Sendable, Hashable {
    public var termination: HookTermination
    /// Its standard output (at most 1 MiB kept).
    public var output: [UInt8]
    /// Its standard error (at most 1 MiB kept).
    public var errorOutput: [UInt8]
    /// From start to end, in seconds.
    public var duration: TimeInterval

    public init(termination: HookTermination, output: [UInt8] = [], errorOutput: [UInt8] = [], duration: TimeInterval = 0) {
        self.termination = termination
        self.output = output
        self.errorOutput = errorOutput
        self.duration = duration
    }
}

/// A user's shell command the agent runs (`--on-command`, `--on-match`): `/bin/sh -c COMMAND`
/// with a JSON document on its standard input, in a process group of its own that is killed
/// whole (SIGKILL) when it runs past the timeout. Runs on a thread of its own, so a slow hook
/// never holds up the event loops.
public struct Hook: Sendable, Hashable {
    /// The shell command line.
    public var command: String
    /// The longest a run may take.
    public var timeout: TimeInterval

    public init(command: String, timeout: TimeInterval) {
        self.command = command
        self.timeout = timeout
    }

    private static let maximumOutput = 1 << 20

    private static let ignoreBrokenPipes: Void = {
        // A hook that exits without reading its input must not kill the agent with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
    }()

    /// Runs the command once with `input` on its standard input and `environment` added to the agent's.
    public func run(input: [UInt8], environment: [String: String] = [:]) async -> HookResult {
        _ = Self.ignoreBrokenPipes
        let command = self.command
        let timeout = self.timeout
        return await withCheckedContinuation { continuation in
            let thread = Thread {
                continuation.resume(returning: Self.runBlocking(command: command, input: input, environment: environment, timeout: timeout))
            }
            thread.name = "databus-hook"
            thread.start()
        }
    }

    private static func runBlocking(command: String, input: [UInt8], environment: [String: String], timeout: TimeInterval) -> HookResult {
        let started = Date()
        var inputPipe: [Int32] = [0, 0]
        var outputPipe: [Int32] = [0, 0]
        var errorPipe: [Int32] = [0, 0]
        guard pipe(&inputPipe) == 0 else { return HookResult(termination: .failedToStart("pipe: \(String(cString: strerror(errno)))")) }
        guard pipe(&outputPipe) == 0 else {
            close(inputPipe[0])
            close(inputPipe[1])
            return HookResult(termination: .failedToStart("pipe: \(String(cString: strerror(errno)))"))
        }
        guard pipe(&errorPipe) == 0 else {
            for descriptor in inputPipe + outputPipe { close(descriptor) }
            return HookResult(termination: .failedToStart("pipe: \(String(cString: strerror(errno)))"))
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inputPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errorPipe[1], 2)
        closeInheritedDescriptors(&actions)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaultSignals, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        var variables = ProcessInfo.processInfo.environment
        for (name, value) in environment { variables[name] = value }
        let environmentStrings: [UnsafeMutablePointer<CChar>?] = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        let arguments: [String] = ["/bin/sh", "-c", command]
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in environmentStrings { free(pointer) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, environmentStrings)
        close(inputPipe[0])
        close(outputPipe[1])
        close(errorPipe[1])
        guard spawned == 0 else {
            close(inputPipe[1])
            close(outputPipe[0])
            close(errorPipe[0])
            return HookResult(termination: .failedToStart(String(cString: strerror(spawned))))
        }

        // The input: small (a JSON document), written before reading, then closed.
        var offset = 0
        while offset < input.count {
            let count = input.withUnsafeBytes { write(inputPipe[1], $0.baseAddress! + offset, input.count - offset) }
            if count < 0 {
                if errno == EINTR { continue }
                break  // The hook closed its input: it does not want it.
            }
            offset += count
        }
        close(inputPipe[1])

        let deadline = started.addingTimeInterval(timeout)
        var output: [UInt8] = []
        var errorOutput: [UInt8] = []
        var open: [Int32: Bool] = [outputPipe[0]: true, errorPipe[0]: true]
        var timedOut = false
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while open.values.contains(true) {
            var descriptors = open.filter(\.value).keys.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 && !timedOut {
                timedOut = true
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
            }
            let wait = timedOut ? 1000 : Int32(max(1, min(1000, remaining * 1000)))
            let ready = poll(&descriptors, nfds_t(descriptors.count), wait)
            if ready < 0 {
                if errno == EINTR { continue }
                break
            }
            if ready == 0 {
                if timedOut { break }  // Killed, and still nothing: give up reading.
                continue
            }
            for descriptor in descriptors where descriptor.revents != 0 {
                let count = buffer.withUnsafeMutableBytes { read(descriptor.fd, $0.baseAddress, $0.count) }
                if count <= 0 {
                    if count < 0 && errno == EINTR { continue }
                    open[descriptor.fd] = false
                    continue
                }
                if descriptor.fd == outputPipe[0] {
                    if output.count < maximumOutput { output += buffer[0..<min(count, maximumOutput - output.count)] }
                } else if errorOutput.count < maximumOutput {
                    errorOutput += buffer[0..<min(count, maximumOutput - errorOutput.count)]
                }
            }
        }
        close(outputPipe[0])
        close(errorPipe[0])
        if !timedOut && deadline.timeIntervalSinceNow <= 0 {
            timedOut = true
            kill(-pid, SIGKILL)
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // A hook that left a child holding its output is done once its shell has exited.
        kill(-pid, SIGKILL)
        let duration = Date().timeIntervalSince(started)
        let termination: HookTermination
        if timedOut {
            termination = .timedOut(timeout)
        } else if status & 0x7F == 0 {
            termination = .exited((status >> 8) & 0xFF)
        } else {
            termination = .signalled(status & 0x7F)
        }
        return HookResult(termination: termination, output: output, errorOutput: errorOutput, duration: duration)
    }

    /// Closes every descriptor from 3 up in the child (glibc 2.34's `posix_spawn_file_actions_addclosefrom_np`,
    /// which Swift's Glibc module does not import); elsewhere marks the parent's close-on-exec.
    private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        #if canImport(Glibc)
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
            return
        }
        #endif
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/fd")) ?? [] {
            guard let descriptor = Int32(name), descriptor > 2 else { continue }
            let flags = fcntl(descriptor, F_GETFD)
            if flags >= 0 { _ = fcntl(descriptor, F_SETFD, flags | FD_CLOEXEC) }
        }
    }
}
