import DatabusTestSupport
import EdgeAgents
import Foundation
import Testing

@Suite("MJPEG streams cut into frames")
struct MJPEGSplitterTests {
    @Test("an ffmpeg MJPEG stream, fed in chunks of any size, gives exactly the JPEGs ffmpeg writes as files", arguments: [1, 7, 4096, 1 << 20])
    func ffmpegStream(chunk: Int) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        try await Media.mjpeg(folder.file("stream.mjpeg"), count: 12)
        try await Media.jpegFiles(folder.path, count: 12)
        let stream = [UInt8](try Data(contentsOf: URL(fileURLWithPath: folder.file("stream.mjpeg"))))
        var splitter = MJPEGSplitter()
        var images: [[UInt8]] = []
        var offset = 0
        while offset < stream.count {
            let end = min(offset + chunk, stream.count)
            images += try splitter.append(stream[offset..<end])
            offset = end
        }
        try splitter.finish()
        #expect(images.count == 12)
        for (index, image) in images.enumerated() {
            let file = [UInt8](try Data(contentsOf: URL(fileURLWithPath: folder.file("\(index).jpg"))))
            #expect(image == file, "frame \(index)")
        }
    }

    @Test("FF D9 inside a segment (an EXIF thumbnail) does not end the image early; garbage between images is skipped")
    func markersInsideSegments() throws {
        // SOI, APP1 holding FF D9, SOS with entropy data holding FF 00 and a restart marker, EOI.
        let image: [UInt8] =
            [0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0xAB, 0xCD, 0xFF, 0xDA, 0x00, 0x04, 0x01, 0x02]
            + [0x11, 0xFF, 0x00, 0x22, 0xFF, 0xD0, 0x33, 0xFF, 0xD9]
        var splitter = MJPEGSplitter()
        let images = try splitter.append([0x00, 0x42] + image + [0x13] + image)
        #expect(images == [image, image])
        #expect(splitter.pendingByteCount <= 1)
    }

    @Test("a stream cut inside an image, or that is not JPEG at all, is an error")
    func brokenStreams() throws {
        var cut = MJPEGSplitter()
        _ = try cut.append([0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10])
        #expect(throws: MJPEGError.self) { try cut.finish() }
        var small = MJPEGSplitter(maximumImageSize: 64)
        #expect(throws: MJPEGError.self) { _ = try small.append([0xFF, 0xD8] + [UInt8](repeating: 0x55, count: 100)) }
    }
}
