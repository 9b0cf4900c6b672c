import EdgeAgents
import Foundation
import LPRModel
import Testing

@Suite("Camera simulator: deterministic, realistic seed-format detections")
struct CameraSimulatorTests {
    let start = Date(timeIntervalSince1970: 1_705_314_600)

    func detections(seed: UInt64, camera: String = "CAM001", count: Int) -> [Detection] {
        var simulator = CameraSimulator(cameraID: camera, checkpointID: "CP001", seed: seed)
        return (0..<count).map { simulator.nextDetection(at: start.addingTimeInterval(Double($0))) }
    }

    @Test("the same seed makes the same detections, byte for byte; another seed or camera makes others")
    func deterministic() {
        let first = detections(seed: 42, count: 50).map { JSONValue.object($0.json).jsonText }
        let again = detections(seed: 42, count: 50).map { JSONValue.object($0.json).jsonText }
        #expect(first == again)
        #expect(first != detections(seed: 43, count: 50).map { JSONValue.object($0.json).jsonText })
        #expect(first != detections(seed: 42, camera: "CAM002", count: 50).map { JSONValue.object($0.json).jsonText })
        #expect(Set(detections(seed: 42, count: 500).map(\.messageID)).count == 500)
    }

    @Test("every detection is what the server validates, with the seed's fields")
    func valid() throws {
        for detection in detections(seed: 7, count: 300) {
            let parsed = try Detection(payload: JSONValue.object(detection.json).jsonBytes, topicCamera: "CAM001")
            #expect(parsed.data.plates.count == parsed.data.platesCount)
            #expect(parsed.data.vehicles.count == parsed.data.vehiclesCount)
            #expect(parsed.metadata["image_path"]?.stringValue?.hasPrefix("/storage/images/CAM001_20240115_") == true)
            for plate in parsed.data.plates {
                #expect((0.3...1).contains(plate.confidence ?? -1))
                #expect(plate.bbox?.count == 4)
            }
            #expect(parsed.data.confidenceScore != nil)
        }
    }

    @Test("traffic has several countries' plate formats, returning vehicles and OCR confusions now and then")
    func realistic() {
        let sample = detections(seed: 11, count: 2000)
        let plates = sample.flatMap(\.data.plates)
        let countries = Set(plates.compactMap(\.country))
        #expect(countries == ["TH", "US", "GB", "DE", "FR"])
        #expect(plates.contains { $0.country == "FR" && $0.plateNumber.wholeMatch(of: /[A-Z]{2}-[0-9]{3}-[A-Z]{2}/) != nil })
        #expect(plates.contains { $0.country == "TH" && $0.plateNumber.unicodeScalars.contains { (0x0E00...0x0E7F).contains($0.value) } })
        let misread = plates.filter { $0.isValid == false }
        #expect(misread.count > 20 && misread.count < 250)
        #expect(misread.allSatisfy { ($0.confidence ?? 1) <= 0.8 })
        let repeated = Dictionary(grouping: plates.filter { $0.isValid == true }, by: \.plateNumber).values.filter { $0.count > 1 }
        #expect(repeated.count > 10)
        #expect(Set(sample.flatMap(\.data.vehicles).compactMap(\.vehicleClass)).isSuperset(of: ["car", "truck", "motorcycle"]))
    }

    @Test("watch-listed plates show up at their rate, so that a demo raises alerts")
    func watchlisted() {
        var simulator = CameraSimulator(
            cameraID: "CAM001",
            checkpointID: "CP001",
            seed: 5,
            options: CameraSimulator.Options(ocrConfusionRate: 0, watchlistPlates: ["WANTED1"], watchlistRate: 0.1)
        )
        let hits = (0..<1000).filter { _ in simulator.nextDetection(at: start).plateNumbers.contains("WANTED1") }.count
        #expect((50...150).contains(hits))
    }

    @Test("simulated health drifts and is assessed like a real camera's")
    func health() throws {
        var simulator = CameraSimulator(cameraID: "CAM003", checkpointID: "CP001", seed: 9)
        let messages = (0..<20).map {
            simulator.nextHealth(at: start.addingTimeInterval(Double($0) * 30), uptimeSeconds: Double($0) * 30, lastDetection: start)
        }
        for message in messages {
            let parsed = try CameraHealth(validating: message.json, topicCamera: "CAM003")
            #expect((0...100).contains(parsed.cpuUsage ?? -1))
            #expect(parsed.temperature != nil)
        }
        #expect(Set(messages.compactMap(\.cpuUsage)).count > 10)
        #expect(CameraSimulator.cameraIDs(count: 3) == ["CAM001", "CAM002", "CAM003"])
        #expect(CameraSimulator.checkpointID(index: 4) == "CP002")
    }
}

@Suite("Camera agent: host health from /proc")
struct HostHealthTests {
    @Test("CPU usage is the busy share between two /proc/stat readings")
    func cpu() throws {
        let first = try #require(HostHealthReader.cpuTimes(stat: "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n"))
        let second = try #require(HostHealthReader.cpuTimes(stat: "cpu  200 0 200 1400 200 0 0 0 0 0\n"))
        #expect(first == HostHealthReader.CPUTimes(busy: 200, total: 1000))
        #expect(HostHealthReader.cpuUsage(from: first, to: second) == 20)
        #expect(HostHealthReader.cpuUsage(from: second, to: second) == nil)
    }

    @Test("memory, uptime and temperature are read from their files; odd ones give nothing")
    func files() {
        let meminfo = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    4000000 kB\n"
        #expect(HostHealthReader.memoryUsage(meminfo: meminfo) == 75)
        #expect(HostHealthReader.memoryUsage(meminfo: "nothing") == nil)
        #expect(HostHealthReader.uptime(text: "86400.52 170000.10\n") == 86400.52)
        #expect(HostHealthReader.temperature(millidegrees: "42500\n") == 42.5)
        #expect(HostHealthReader.temperature(millidegrees: "garbage") == nil)
    }

    @Test("a sample of this host has CPU, memory, disk and uptime")
    func thisHost() throws {
        var reader = HostHealthReader(diskPath: NSTemporaryDirectory())
        usleep(50_000)
        let sample = reader.sample()
        #expect((0...100).contains(try #require(sample.memoryUsage)))
        #expect((0...100).contains(try #require(sample.diskUsage)))
        #expect(try #require(sample.uptimeSeconds) > 0)
    }

    @Test("high figures make the camera degraded or unhealthy, with alerts")
    func assessment() {
        let now = Date()
        let assessment = HealthAssessment()
        #expect(assessment.assess(HostSample(cpuUsage: 20, memoryUsage: 40, diskUsage: 30, temperature: 45), now: now).status == .healthy)
        let busy = assessment.assess(HostSample(cpuUsage: 95, memoryUsage: 40, diskUsage: 30), now: now)
        #expect(busy.status == .degraded)
        #expect(busy.alerts.map(\.level) == ["warning"])
        let hot = assessment.assess(HostSample(cpuUsage: 95, diskUsage: 98, temperature: 90), now: now)
        #expect(hot.status == .unhealthy)
        #expect(hot.alerts.filter { $0.level == "critical" }.count == 2)
    }
}

@Suite("Camera agent: the edge watch-list")
struct EdgeWatchlistTests {
    func update(version: Int, plates: [String]) -> [UInt8] {
        let entries = plates.enumerated().map { WatchlistEntry(id: "e\($0.offset)", plate: $0.element, reason: "stolen") }
        return JSONValue.object(WatchlistUpdate(version: version, timestamp: Date(), entries: entries).json).jsonBytes
    }

    @Test("a newer update replaces the list, an older one is ignored, and matches fold OCR confusions")
    func updates() throws {
        var watchlist = EdgeWatchlist()
        #expect(watchlist.receive(payload: update(version: 3, plates: ["ABC1234"])) == .replaced(version: 3, entries: 1))
        #expect(watchlist.receive(payload: update(version: 2, plates: ["ZZZ999"])) == .stale(version: 2))
        guard case .refused = watchlist.receive(payload: Array("{}".utf8)) else {
            Issue.record("an update without version was taken")
            return
        }
        var simulator = CameraSimulator(
            cameraID: "CAM001",
            checkpointID: "CP001",
            seed: 1,
            options: .init(ocrConfusionRate: 0, watchlistPlates: ["A8C-1234"], watchlistRate: 1)
        )
        let detection = simulator.nextDetection(at: Date())
        let matches = watchlist.matches(detection, at: Date())
        #expect(matches.map(\.entry.plate) == ["ABC1234"])
        #expect(matches.first?.kind == .confusable)
    }

    @Test("the list survives in its file")
    func file() throws {
        let path = NSTemporaryDirectory() + "watchlist-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var watchlist = EdgeWatchlist()
        _ = watchlist.receive(payload: update(version: 5, plates: ["XYZ789", "B-AB 1234"]))
        try watchlist.save(path: path)
        let loaded = try EdgeWatchlist.load(path: path)
        #expect(loaded.version == 5)
        #expect(loaded.update?.entries.map(\.plate) == ["XYZ789", "B-AB 1234"])
    }
}
