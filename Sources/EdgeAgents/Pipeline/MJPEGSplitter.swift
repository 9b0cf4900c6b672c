/// Cuts an MJPEG stream (JPEG images one after another, as `ffmpeg -f mjpeg` writes them) into
/// its images by walking the JPEG markers, so that bytes `FF D9` inside a segment (an EXIF
/// thumbnail, say) do not end an image early.
///
/// Feed it bytes as they arrive; it returns every image completed so far.
public struct MJPEGSplitter: Sendable {
    /// The largest image accepted; a stream that goes past it without an end of image is broken.
    public var maximumImageSize: Int

    private var buffer: [UInt8] = []
    /// Where the image being read starts in `buffer`, once its SOI was seen.
    private var imageStart: Int?
    /// The next byte to look at.
    private var cursor = 0
    /// Inside entropy-coded data after SOS, where only `FF` followed by something other than
    /// `00` or a restart marker starts a marker.
    private var inScan = false

    public init(maximumImageSize: Int = 64 * 1024 * 1024) {
        self.maximumImageSize = maximumImageSize
    }

    /// Bytes waiting for the rest of their image.
    public var pendingByteCount: Int { buffer.count }

    /// Adds bytes and returns the images they complete.
    public mutating func append(_ bytes: some Collection<UInt8>) throws(MJPEGError) -> [[UInt8]] {
        buffer.append(contentsOf: bytes)
        var images: [[UInt8]] = []
        while let image = try nextImage() { images.append(image) }
        if imageStart == nil {
            // Nothing of an image yet: keep at most a trailing FF that may start an SOI.
            let keep = buffer.last == 0xFF ? 1 : 0
            buffer.removeFirst(buffer.count - keep)
            cursor = 0
        } else if buffer.count > maximumImageSize {
            throw MJPEGError("an image is larger than \(maximumImageSize) bytes, or the stream is not MJPEG")
        }
        return images
    }

    /// The stream ended: fails when it stopped inside an image.
    public func finish() throws(MJPEGError) {
        if imageStart != nil { throw MJPEGError("the stream ended inside an image (\(buffer.count) bytes without an end of image)") }
    }

    private mutating func nextImage() throws(MJPEGError) -> [UInt8]? {
        if imageStart == nil {
            // Look for SOI (FF D8).
            while cursor + 1 < buffer.count {
                if buffer[cursor] == 0xFF && buffer[cursor + 1] == 0xD8 {
                    imageStart = cursor
                    cursor += 2
                    inScan = false
                    break
                }
                cursor += 1
            }
            guard imageStart != nil else { return nil }
        }
        while true {
            if inScan {
                // Find the next real marker in the entropy-coded data.
                while cursor + 1 < buffer.count {
                    if buffer[cursor] == 0xFF {
                        let next = buffer[cursor + 1]
                        if next == 0x00 || (0xD0...0xD7).contains(next) || next == 0xFF {
                            cursor += next == 0xFF ? 1 : 2
                            continue
                        }
                        inScan = false
                        break
                    }
                    cursor += 1
                }
                if inScan { return nil }
            }
            guard cursor + 1 < buffer.count else { return nil }
            guard buffer[cursor] == 0xFF else {
                throw MJPEGError("expected a JPEG marker at byte \(cursor - (imageStart ?? 0)) of an image")
            }
            let marker = buffer[cursor + 1]
            switch marker {
            case 0xFF:
                cursor += 1  // fill byte
            case 0xD9:
                let start = imageStart ?? 0
                let end = cursor + 2
                let image = Array(buffer[start..<end])
                buffer.removeFirst(end)
                cursor = 0
                imageStart = nil
                return image
            case 0x01, 0xD0...0xD8:
                cursor += 2
            default:
                guard cursor + 3 < buffer.count else { return nil }
                let length = Int(buffer[cursor + 2]) << 8 | Int(buffer[cursor + 3])
                guard length >= 2 else { throw MJPEGError("JPEG segment 0x\(String(marker, radix: 16)) with length \(length)") }
                guard cursor + 2 + length <= buffer.count else { return nil }
                cursor += 2 + length
                if marker == 0xDA { inScan = true }
            }
        }
    }
}

/// An MJPEG stream that cannot be cut into images.
public struct MJPEGError: Error, Sendable, Hashable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
