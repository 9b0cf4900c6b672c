import ArgumentParser
import DatabusTools
import Foundation
import MQTTBroker

/// `databus passwd`: manage a mosquitto password file, as mosquitto_passwd does.
struct PasswdCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passwd",
        abstract: "Manage a mosquitto password file (username:hash lines), as mosquitto_passwd does.",
        discussion: """
            Hashes are written as mosquitto 2 writes them: $7$ (PBKDF2-HMAC-SHA512, 101 \
            iterations, 12-byte salt) unless -H sha512 asks for mosquitto 1.6's $6$. A file \
            written here works in mosquitto, and the other way round.

            Examples:
              databus passwd -c /etc/databus/passwd backend          # create; asks for the password twice
              databus passwd -b /etc/databus/passwd camera-7 s3cret  # add or change, password given
              databus passwd -D /etc/databus/passwd camera-7         # delete
              databus passwd -U /etc/databus/passwd                  # hash a file of user:password lines in place
            """
    )

    @Flag(name: .customShort("c"), help: "Create a new password file, replacing any existing one.")
    var create = false

    @Flag(name: .customShort("b"), help: "Batch mode: take the password from the command line.")
    var batch = false

    @Flag(name: .customShort("D"), help: "Delete the user instead of setting its password.")
    var delete = false

    @Flag(name: .customShort("U"), help: "Hash every plain user:password line of the file in place.")
    var update = false

    @Option(name: .customShort("H"), help: "Hash algorithm: sha512-pbkdf2 (default, $7$) or sha512 ($6$).")
    var hashAlgorithm = "sha512-pbkdf2"

    @Option(name: .customShort("I"), help: "PBKDF2 iterations for $7$ hashes.")
    var iterations = PasswordHash.defaultIterations

    @Argument(help: "The password file.")
    var file: String

    @Argument(help: "The username.")
    var username: String?

    @Argument(help: "The password (with -b only).")
    var password: String?

    func validate() throws {
        guard [create, delete, update].filter({ $0 }).count <= 1 else {
            throw ValidationError("-c, -D and -U cannot be combined")
        }
        if update {
            guard username == nil else { throw ValidationError("-U takes only the password file") }
        } else {
            guard username != nil else { throw ValidationError("a username is required") }
        }
        if batch && !delete && !update && password == nil { throw ValidationError("-b needs a password after the username") }
        if !batch && password != nil { throw ValidationError("a password on the command line needs -b") }
        guard ["sha512-pbkdf2", "sha512"].contains(hashAlgorithm) else {
            throw ValidationError("-H expects sha512-pbkdf2 or sha512, not \(hashAlgorithm)")
        }
        guard (1...10_000_000).contains(iterations) else { throw ValidationError("-I expects 1 to 10000000 iterations") }
    }

    private var algorithm: PasswordHash.Algorithm {
        hashAlgorithm == "sha512" ? .sha512 : .pbkdf2SHA512(iterations: iterations)
    }

    func run() throws {
        do {
            try perform()
        } catch let failure as PasswordFileTool.Failure {
            FileHandle.standardError.write(Data("Error: \(failure)\n".utf8))
            throw ExitCode.failure
        }
    }

    private func perform() throws {
        if update {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw PasswordFileTool.Failure("cannot read \(file)")
            }
            let hashed = try PasswordFileTool.hashPlainFile(String(decoding: data, as: UTF8.self), algorithm: algorithm, file: file)
            return try PasswordFileTool.write(hashed, to: file)
        }
        guard let username else { return }
        try PasswordFileTool.validate(username: username)
        var passwords = create ? PasswordFile() : try PasswordFileTool.read(file)
        if delete {
            guard passwords.remove(username) else { throw PasswordFileTool.Failure("user \(username) is not in \(file)") }
            return try PasswordFileTool.write(passwords, to: file)
        }
        let secret = try password ?? Self.askTwice()
        try PasswordFileTool.validate(password: secret)
        passwords.set(username, PasswordHash(hashing: Array(secret.utf8), algorithm: algorithm))
        try PasswordFileTool.write(passwords, to: file)
    }

    /// Asks for the password twice on the terminal without echo (or reads two lines from a pipe).
    private static func askTwice() throws -> String {
        let first = try ask("Password: ")
        let second = try ask("Reenter password: ")
        guard first == second else { throw PasswordFileTool.Failure("the passwords do not match") }
        return first
    }

    private static func ask(_ prompt: String) throws -> String {
        FileHandle.standardError.write(Data(prompt.utf8))
        let terminal = isatty(STDIN_FILENO) == 1
        var saved = termios()
        if terminal {
            tcgetattr(STDIN_FILENO, &saved)
            var silent = saved
            silent.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &silent)
        }
        defer {
            if terminal {
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
                FileHandle.standardError.write(Data("\n".utf8))
            }
        }
        guard let line = readLine(strippingNewline: true) else { throw PasswordFileTool.Failure("no password given") }
        return line
    }
}
