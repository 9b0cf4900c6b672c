import Foundation
import LPRModel

/// Makes realistic seed-format detections and health messages for a simulated camera,
/// deterministically: the same seed, camera and timestamps give the same messages, message ids
/// included. `databus camera --simulate`, `databus up --demo` and `databus bench ingest` use it.
///
/// Plates follow several countries' formats (Thailand, the United States, Great Britain,
/// Germany, France); vehicles come back now and then (the same plate on the same car); the OCR
/// confuses a character now and then (O/0, I/1, B/8, S/5, Z/2, G/6, D/0) with a lower
/// confidence; lighting follows the hour and the weather changes slowly.
///
/// ```swift
/// var camera = CameraSimulator(cameraID: "CAM001", checkpointID: "CP001", seed: 42)
/// let detection = camera.nextDetection(at: Date())
/// ```
public struct CameraSimulator: Sendable {
    /// How the simulated traffic looks.
    public struct Options: Sendable, Hashable {
        /// Countries by share of the traffic: `TH`, `US`, `GB`, `DE`, `FR`.
        public var countries: [String: Double]
        /// The share of plates read with one character confused.
        public var ocrConfusionRate: Double
        /// The share of detections that are a vehicle seen before.
        public var returningVehicleRate: Double
        /// Plates to show now and then (watch-listed ones, for a demo), as listed.
        public var watchlistPlates: [String]
        /// The share of detections showing one of ``watchlistPlates``.
        public var watchlistRate: Double

        public init(
            countries: [String: Double] = ["TH": 0.4, "US": 0.2, "GB": 0.15, "DE": 0.15, "FR": 0.1],
            ocrConfusionRate: Double = 0.05,
            returningVehicleRate: Double = 0.15,
            watchlistPlates: [String] = [],
            watchlistRate: Double = 0.01
        ) {
            self.countries = countries
            self.ocrConfusionRate = ocrConfusionRate
            self.returningVehicleRate = returningVehicleRate
            self.watchlistPlates = watchlistPlates
            self.watchlistRate = watchlistRate
        }
    }

    /// A vehicle and its plate as the simulation knows them (the truth, before the OCR).
    public struct SimulatedVehicle: Sendable, Hashable {
        public var plate: String
        public var country: String
        public var province: String?
        public var vehicleClass: String
        public var vehicleType: String?
        public var color: String
        public var brand: String
        public var model: String
        public var year: Int
    }

    public let cameraID: String
    public let checkpointID: String
    /// How the traffic looks; ``Options/watchlistPlates`` may change as the watch-list does.
    public var options: Options
    private var random: SimulatorRandom
    private var seen: [SimulatedVehicle] = []
    private var sequence = 0
    private var weather = "clear"
    private var cpu = 35.0
    private var memory = 45.0
    private var disk = 30.0

    /// - Parameters:
    ///   - cameraID: the camera's id (`CAM001`).
    ///   - checkpointID: its checkpoint (`CP001`).
    ///   - seed: the simulation's seed; each camera draws its own stream from it.
    ///   - options: how the traffic looks.
    public init(cameraID: String, checkpointID: String, seed: UInt64, options: Options = Options()) {
        self.cameraID = cameraID
        self.checkpointID = checkpointID
        self.options = options
        self.random = SimulatorRandom(seed: seed, stream: cameraID)
        self.disk = random.uniform(15...45)
        self.weather = random.pick(Self.weathers).0
    }

    /// The ids of `count` simulated cameras: `CAM001`, `CAM002`, ...
    public static func cameraIDs(count: Int) -> [String] {
        (0..<max(0, count)).map { cameraID(index: $0) }
    }

    /// The id of the camera at `index` (from 0): `CAM001`, ... `CAM999`, `CAM1000`.
    public static func cameraID(index: Int) -> String {
        let number = String(index + 1)
        return "CAM" + String(repeating: "0", count: max(0, 3 - number.count)) + number
    }

    /// The checkpoint of the camera at `index` when none is given: four cameras a checkpoint.
    public static func checkpointID(index: Int) -> String {
        let number = String(index / 4 + 1)
        return "CP" + String(repeating: "0", count: max(0, 3 - number.count)) + number
    }

    // MARK: Detections

    /// The next detection, captured at `time`.
    public mutating func nextDetection(at time: Date) -> Detection {
        sequence += 1
        if random.chance(0.01) { weather = random.pick(weighted: Self.weathers) }
        let messageID = random.uuid()
        let vehicleCount = random.chance(0.1) ? 2 : 1
        var vehicles: [Vehicle] = []
        var plates: [Plate] = []
        var best = 0.0
        for index in 0..<vehicleCount {
            let truth = nextVehicle()
            let x = random.uniform(80...1400)
            let y = random.uniform(200...700)
            let width = truth.vehicleClass == "motorcycle" ? random.uniform(90...160) : random.uniform(260...480)
            let height = width * random.uniform(0.55...0.8)
            let vehicleConfidence = Self.round(random.uniform(0.82...0.99), 2)
            vehicles.append(
                Vehicle(
                    vehicleIndex: index,
                    bbox: [x, y, x + width, y + height].map { Self.round($0, 0) },
                    confidence: vehicleConfidence,
                    vehicleClass: truth.vehicleClass,
                    vehicleType: truth.vehicleType,
                    color: truth.color,
                    brand: truth.brand,
                    model: truth.model,
                    year: truth.year
                )
            )
            var read = truth.plate
            var plateConfidence = random.uniform(0.8...0.99)
            if random.chance(options.ocrConfusionRate), let confused = confuse(read) {
                read = confused
                plateConfidence = random.uniform(0.55...0.8)
            }
            // Drawn whatever the conditions, so that the numbers drawn do not depend on the time.
            let conditions = random.uniform(0.9...1)
            if weather != "clear" || Self.lighting(at: time) == "night" { plateConfidence *= conditions }
            plateConfidence = Self.round(plateConfidence, 2)
            best = max(best, min(plateConfidence, vehicleConfidence))
            let plateX = x + width * random.uniform(0.3...0.45)
            let plateY = y + height * random.uniform(0.6...0.75)
            plates.append(
                Plate(
                    plateIndex: index,
                    plateNumber: read,
                    bbox: [plateX, plateY, plateX + width * 0.22, plateY + width * 0.07].map { Self.round($0, 0) },
                    confidence: plateConfidence,
                    plateType: truth.vehicleClass == "bus" || truth.vehicleClass == "truck" ? "commercial" : "standard",
                    country: truth.country,
                    province: truth.province,
                    isValid: read == truth.plate
                )
            )
        }
        let data = DetectionData(
            confidenceScore: Self.round(best, 2),
            detectionType: "lpr",
            processingTimeMs: Self.round(random.uniform(45...180), 0),
            vehicles: vehicles,
            plates: plates
        )
        let metadata: JSONObject = [
            "image_path": .string("/storage/images/\(cameraID)_\(Self.compactTime(time))_\(sequence).jpg"),
            "weather": .string(weather),
            "lighting": .string(Self.lighting(at: time)),
        ]
        return Detection(messageID: messageID, timestamp: time, cameraID: cameraID, checkpointID: checkpointID, data: data, metadata: metadata)
    }

    /// The next vehicle: a returning one, a watch-listed plate, or a new one.
    private mutating func nextVehicle() -> SimulatedVehicle {
        if !options.watchlistPlates.isEmpty, random.chance(options.watchlistRate) {
            var vehicle = newVehicle()
            vehicle.plate = random.pick(options.watchlistPlates)
            return vehicle
        }
        if !seen.isEmpty, random.chance(options.returningVehicleRate) { return random.pick(seen) }
        let vehicle = newVehicle()
        if seen.count < 64 {
            seen.append(vehicle)
        } else {
            seen[random.integer(0...63)] = vehicle
        }
        return vehicle
    }

    private mutating func newVehicle() -> SimulatedVehicle {
        let countries = options.countries.filter { $0.value > 0 && Self.formats[$0.key] != nil }.sorted { $0.key < $1.key }
        let country = countries.isEmpty ? "TH" : random.pick(weighted: countries.map { ($0.key, $0.value) })
        // A model with the class and body it really has: no motorcycle Kangoo.
        let model = random.pick(weighted: Self.catalogue.map { ($0, $0.weight) })
        return SimulatedVehicle(
            plate: plate(country: country),
            country: country,
            province: random.pick(Self.provinces[country] ?? [""]),
            vehicleClass: model.vehicleClass,
            vehicleType: model.vehicleType,
            color: random.pick(weighted: Self.colors),
            brand: model.make,
            model: model.model,
            year: random.integer(2005...2024)
        )
    }

    /// A plate in one of `country`'s formats: `L` a Latin letter, `T` a Thai consonant, `9` a digit.
    private mutating func plate(country: String) -> String {
        let format = random.pick(Self.formats[country] ?? ["LLL9999"])
        var plate = ""
        for character in format {
            switch character {
            case "L": plate.append(random.pick(Self.latinLetters))
            case "T": plate.append(random.pick(Self.thaiLetters))
            case "9": plate.append(random.pick(Self.digits))
            case "N": plate.append(random.pick(Array("123456789")))
            default: plate.append(character)
            }
        }
        return plate
    }

    /// The plate with one confusable character swapped, as an OCR engine misreads it.
    private mutating func confuse(_ plate: String) -> String? {
        var characters = Array(plate)
        let candidates = characters.indices.filter { Self.confusions[characters[$0]] != nil }
        guard !candidates.isEmpty else { return nil }
        let index = random.pick(candidates)
        characters[index] = Self.confusions[characters[index]]!
        return String(characters)
    }

    // MARK: Health

    /// A health message at `time`: figures drifting as a real camera's do.
    public mutating func nextHealth(at time: Date, uptimeSeconds: Double, lastDetection: Date?) -> CameraHealth {
        cpu = min(98, max(5, cpu + random.uniform(-6...6)))
        memory = min(95, max(20, memory + random.uniform(-2...2)))
        disk = min(99, disk + random.uniform(0...0.05))
        let temperature = Self.round(38 + cpu * 0.3 + random.uniform(-1.5...1.5), 1)
        let sample = HostSample(
            cpuUsage: Self.round(cpu, 1),
            memoryUsage: Self.round(memory, 1),
            diskUsage: Self.round(disk, 1),
            uptimeSeconds: uptimeSeconds.rounded(),
            temperature: temperature
        )
        let (status, alerts) = HealthAssessment().assess(sample, now: time)
        return CameraHealth(
            messageID: random.uuid(),
            timestamp: time,
            cameraID: cameraID,
            status: status,
            cpuUsage: sample.cpuUsage,
            memoryUsage: sample.memoryUsage,
            diskUsage: sample.diskUsage,
            lastDetection: lastDetection,
            uptimeSeconds: sample.uptimeSeconds,
            temperature: sample.temperature,
            alerts: alerts
        )
    }

    // MARK: Tables

    static let latinLetters = Array("ABCDEFGHJKLMNPRSTUVWXYZ")
    static let thaiLetters = Array("กขคฆงจฉชซฌญฎฏฐฑฒณดตถทธนบปผพฟภมยรลวศษสหฬอฮ")
    static let digits = Array("0123456789")
    static let formats: [String: [String]] = [
        "TH": ["TT 9999", "NTT 9999", "TT 999"],
        "US": ["LLL9999", "NLLL999", "LLL 999"],
        "GB": ["LL99 LLL"],
        "DE": ["L-LL 9999", "LL-L 999", "LLL-LL 99"],
        "FR": ["LL-999-LL"],
    ]
    static let provinces: [String: [String]] = [
        "TH": ["Bangkok", "Chiang Mai", "Phuket", "Khon Kaen", "Chon Buri", "Nonthaburi"],
        "US": ["California", "Texas", "New York", "Florida", "Washington"],
        "GB": ["London", "Manchester", "Birmingham", "Glasgow"],
        "DE": ["Berlin", "Bayern", "Hamburg", "Hessen"],
        "FR": ["Île-de-France", "Auvergne-Rhône-Alpes", "Occitanie"],
    ]
    static let confusions: [Character: Character] = [
        "O": "0", "0": "O", "D": "0", "I": "1", "1": "I", "B": "8", "8": "B", "S": "5", "5": "S", "Z": "2", "2": "Z", "G": "6", "6": "G",
    ]
    static let colors: [(String, Double)] = [
        ("white", 0.3), ("black", 0.2), ("silver", 0.18), ("gray", 0.12), ("red", 0.07), ("blue", 0.07), ("green", 0.03), ("yellow", 0.03),
    ]
    /// A vehicle model as it is sold: make, model, class, body type, and how common it is.
    struct CatalogueModel: Hashable {
        let make: String
        let model: String
        let vehicleClass: String
        let vehicleType: String?
        let weight: Double
    }

    static let catalogue: [CatalogueModel] = [
        .init(make: "Toyota", model: "Camry", vehicleClass: "car", vehicleType: "sedan", weight: 6),
        .init(make: "Toyota", model: "Corolla", vehicleClass: "car", vehicleType: "sedan", weight: 8),
        .init(make: "Toyota", model: "Hilux", vehicleClass: "car", vehicleType: "pickup", weight: 7),
        .init(make: "Toyota", model: "Yaris", vehicleClass: "car", vehicleType: "hatchback", weight: 5),
        .init(make: "Toyota", model: "Fortuner", vehicleClass: "car", vehicleType: "suv", weight: 3),
        .init(make: "Honda", model: "Civic", vehicleClass: "car", vehicleType: "sedan", weight: 5),
        .init(make: "Honda", model: "City", vehicleClass: "car", vehicleType: "sedan", weight: 4),
        .init(make: "Honda", model: "CR-V", vehicleClass: "car", vehicleType: "suv", weight: 4),
        .init(make: "Honda", model: "Jazz", vehicleClass: "car", vehicleType: "hatchback", weight: 3),
        .init(make: "Honda", model: "Wave", vehicleClass: "motorcycle", vehicleType: "underbone", weight: 6),
        .init(make: "Yamaha", model: "NMAX", vehicleClass: "motorcycle", vehicleType: "scooter", weight: 4),
        .init(make: "Isuzu", model: "D-Max", vehicleClass: "car", vehicleType: "pickup", weight: 6),
        .init(make: "Isuzu", model: "MU-X", vehicleClass: "car", vehicleType: "suv", weight: 2),
        .init(make: "Isuzu", model: "FVR", vehicleClass: "truck", vehicleType: "box", weight: 2),
        .init(make: "Ford", model: "Ranger", vehicleClass: "car", vehicleType: "pickup", weight: 4),
        .init(make: "Ford", model: "Focus", vehicleClass: "car", vehicleType: "hatchback", weight: 3),
        .init(make: "Ford", model: "F-150", vehicleClass: "car", vehicleType: "pickup", weight: 3),
        .init(make: "Ford", model: "Transit", vehicleClass: "car", vehicleType: "van", weight: 3),
        .init(make: "Volkswagen", model: "Golf", vehicleClass: "car", vehicleType: "hatchback", weight: 4),
        .init(make: "Volkswagen", model: "Passat", vehicleClass: "car", vehicleType: "sedan", weight: 3),
        .init(make: "Volkswagen", model: "Transporter", vehicleClass: "car", vehicleType: "van", weight: 2),
        .init(make: "BMW", model: "3 Series", vehicleClass: "car", vehicleType: "sedan", weight: 3),
        .init(make: "BMW", model: "X3", vehicleClass: "car", vehicleType: "suv", weight: 2),
        .init(make: "Mercedes-Benz", model: "C-Class", vehicleClass: "car", vehicleType: "sedan", weight: 3),
        .init(make: "Mercedes-Benz", model: "Sprinter", vehicleClass: "car", vehicleType: "van", weight: 2),
        .init(make: "Mercedes-Benz", model: "Actros", vehicleClass: "truck", vehicleType: "tractor", weight: 1),
        .init(make: "Renault", model: "Clio", vehicleClass: "car", vehicleType: "hatchback", weight: 3),
        .init(make: "Renault", model: "Kangoo", vehicleClass: "car", vehicleType: "van", weight: 2),
        .init(make: "Nissan", model: "Almera", vehicleClass: "car", vehicleType: "sedan", weight: 3),
        .init(make: "Nissan", model: "Navara", vehicleClass: "car", vehicleType: "pickup", weight: 3),
        .init(make: "Nissan", model: "Leaf", vehicleClass: "car", vehicleType: "hatchback", weight: 1),
        .init(make: "Mitsubishi", model: "Triton", vehicleClass: "car", vehicleType: "pickup", weight: 3),
        .init(make: "Mitsubishi", model: "Xpander", vehicleClass: "car", vehicleType: "suv", weight: 2),
        .init(make: "Hino", model: "500", vehicleClass: "truck", vehicleType: "tanker", weight: 1),
        .init(make: "Volvo", model: "9700", vehicleClass: "bus", vehicleType: "coach", weight: 1),
        .init(make: "Tesla", model: "Model 3", vehicleClass: "car", vehicleType: "sedan", weight: 2),
        .init(make: "Tesla", model: "Model Y", vehicleClass: "car", vehicleType: "suv", weight: 2),
    ]
    static let weathers: [(String, Double)] = [("clear", 0.6), ("cloudy", 0.25), ("rain", 0.12), ("fog", 0.03)]

    /// `daylight`, `dusk` or `night` by the hour of `time` (UTC).
    static func lighting(at time: Date) -> String {
        let hour = Int(time.timeIntervalSince1970.truncatingRemainder(dividingBy: 86_400) / 3600)
        switch hour {
        case 6..<17: return "daylight"
        case 17..<19, 5..<6: return "dusk"
        default: return "night"
        }
    }

    /// `20240115_103000` (UTC).
    static func compactTime(_ time: Date) -> String {
        let text = RFC3339.string(from: time)
        let digits = text.prefix(19).filter(\.isNumber)
        return "\(digits.prefix(8))_\(digits.dropFirst(8))"
    }

    static func round(_ value: Double, _ places: Int) -> Double {
        let scale = pow(10, Double(places))
        return (value * scale).rounded() / scale
    }
}
