import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs `/bin/sh -c COMMAND` for `--jwt-command` and returns what it prints.
enum ShellCommand {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The command's standard output without its trailing newline; its standard error goes to ours.
    ///
    /// - Throws: ``Failure`` when the command cannot start, exits non-zero or prints nothing.
    static func output(of command: String) async throws -> String {
        // posix_spawn, read and waitpid block: run them on a thread of their own, not on the
        // cooperative pool the client's tasks share.
        let output = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
            let thread = Thread {
                continuation.resume(with: Result { try run(command) })
            }
            thread.start()
        }
        var token = Substring(output)
        while token.last == "\n" || token.last == "\r" { token = token.dropLast() }
        guard !token.isEmpty else { throw Failure(description: "--jwt-command printed nothing: \(command)") }
        return String(token)
    }

    private static func run(_ command: String) throws -> String {
        var pipe: [Int32] = [0, 0]
        guard makePipe(&pipe) == 0 else { throw Failure(description: "could not make a pipe: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
        posix_spawn_file_actions_addclose(&actions, pipe[0])
        posix_spawn_file_actions_addclose(&actions, pipe[1])

        let words: [String] = ["/bin/sh", "-c", command]
        let argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, "/bin/sh", &actions, nil, argv, environ)
        close(pipe[1])
        guard spawned == 0 else {
            close(pipe[0])
            throw Failure(description: "could not run /bin/sh: \(String(cString: strerror(spawned)))")
        }

        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(pipe[0], $0.baseAddress, $0.count) }
            if count > 0 {
                output.append(contentsOf: chunk[0..<count])
            } else if count == 0 || errno != EINTR {
                break
            }
        }
        close(pipe[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED and WEXITSTATUS, spelled out.
        guard status & 0x7F == 0 else { throw Failure(description: "--jwt-command was killed by signal \(status & 0x7F)") }
        let exitCode = (status >> 8) & 0xFF
        guard exitCode == 0 else { throw Failure(description: "--jwt-command exited with \(exitCode)") }
        return String(decoding: output, as: UTF8.self)
    }
}

/// `pipe(2)`, under a name that a local variable does not shadow.
private func makePipe(_ descriptors: inout [Int32]) -> Int32 {
    pipe(&descriptors)
}
