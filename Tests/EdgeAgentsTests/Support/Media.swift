import DatabusTestSupport
import Foundation

/// Frames made by real encoders: ffmpeg and ImageMagick, from Debian (scripts/test installs them).
enum Media {
    /// Writes `count` test frames of `width`x`height` as an MJPEG stream (what `ffmpeg -f mjpeg` writes).
    static func mjpeg(_ path: String, count: Int, width: Int = 320, height: Int = 240, quality: Int = 5) async throws {
        let result = try await runProgramCollectingErrors(
            "ffmpeg",
            [
                "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=\(width)x\(height):rate=10", "-frames:v", "\(count)",
                "-q:v", "\(quality)", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-f", "mjpeg", path,
            ],
            timeout: .seconds(120)
        )
        guard result.status == 0 else { throw InteropError("ffmpeg failed (\(result.status)): \(result.errorOutput)") }
    }

    /// Writes the same frames as separate JPEG files `{n}.jpg` (n from `start`).
    static func jpegFiles(_ directory: String, count: Int, width: Int = 320, height: Int = 240, quality: Int = 5, start: Int = 0) async throws {
        let result = try await runProgramCollectingErrors(
            "ffmpeg",
            [
                "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=\(width)x\(height):rate=10", "-frames:v", "\(count)",
                "-q:v", "\(quality)", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-start_number", "\(start)", "-f", "image2",
                "\(directory)/%d.jpg",
            ],
            timeout: .seconds(120)
        )
        guard result.status == 0 else { throw InteropError("ffmpeg failed (\(result.status)): \(result.errorOutput)") }
    }

    /// One JPEG drawn by ImageMagick: a `width`x`height` image of one colour with text on it.
    static func magickJPEG(_ path: String, width: Int, height: Int, colour: String) async throws {
        let result = try await runProgramCollectingErrors(
            "convert",
            ["-size", "\(width)x\(height)", "xc:\(colour)", "-fill", "white", "-draw", "rectangle 10,10 60,40", "-quality", "90", path]
        )
        guard result.status == 0 else { throw InteropError("ImageMagick convert failed (\(result.status)): \(result.errorOutput)") }
    }
}
