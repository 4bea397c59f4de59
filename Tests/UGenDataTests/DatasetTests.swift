import Foundation
import UGenKernels
import UGenStore
import XCTest

@testable import UGenData

final class DatasetTests: XCTestCase {
    func testExamplesFollowTheSpecFormatsAndMasks() {
        let layout = VocabLayout(textVocab: 300, codebookSize: 10)
        XCTAssertEqual(layout.vocabSize, 316)
        XCTAssertEqual([layout.pad, layout.bos, layout.eos, layout.boi, layout.eoi, layout.unkImage], [300, 301, 302, 303, 304, 305])
        XCTAssertEqual(layout.visualId(code: 0), 306)
        XCTAssertEqual(layout.code(of: 315), 9)
        XCTAssertTrue(layout.isVisual(306) && !layout.isVisual(305) && layout.isText(299) && layout.isSpecial(300))

        let text = layout.textExample([10, 11])
        XCTAssertEqual(text.tokens, [301, 10, 11, 302])
        XCTAssertEqual(text.mask, [0, 1, 1, 1])
        let understand = layout.imageToTextExample(codes: [0, 9], caption: [20])
        XCTAssertEqual(understand.tokens, [301, 303, 306, 315, 304, 20, 302])
        XCTAssertEqual(understand.mask, [0, 0, 0, 0, 0, 1, 1])
        let generate = layout.textToImageExample(caption: [20], codes: [0, 9])
        XCTAssertEqual(generate.tokens, [301, 20, 303, 306, 315, 304, 302])
        XCTAssertEqual(generate.mask, [0, 0, 0, 1, 1, 1, 0])
        let coded = try! JSONDecoder().decode(VocabLayout.self, from: try! JSONEncoder().encode(layout))
        XCTAssertEqual(coded, layout)
    }

    func testTokenizeWritesDatasetsThatReadBack() throws {
        let d = try SmallDataset.shared()
        let train = try DatasetReader(path: d.train), val = try DatasetReader(path: d.val, expecting: train.layout)
        let layout = train.layout
        XCTAssertEqual(layout.codebookSize, 16)
        XCTAssertEqual(layout.textVocab, 320)
        XCTAssertEqual(train.countsByTask[1], 180)
        XCTAssertEqual(train.countsByTask[1], train.countsByTask[2])
        XCTAssertEqual(val.countsByTask[1], 20)
        XCTAssertEqual(train.countsByTask[0] + val.countsByTask[0], 5, "4 paragraphs and one %-separated document")
        XCTAssertEqual(d.summary.examples["train"], train.countsByTask)

        let tokenizers = try Tokenizers(path: d.tokenizer)
        XCTAssertEqual(tokenizers.hash, train.tokenizerHash)
        XCTAssertEqual(tokenizers.layout, layout)
        XCTAssertEqual(tokenizers.tokensPerImage, 16)
        let bpe = tokenizers.text, vq = try XCTUnwrap(tokenizers.image)

        var seen = Set<ExampleTask>()
        for i in 0..<train.count {
            let e = try train.example(i)
            XCTAssertEqual(e.task, train.task(of: i))
            XCTAssertEqual(e.tokens.count, train.length(of: i))
            XCTAssertEqual(e.tokens.first, layout.bos)
            XCTAssertEqual(e.mask.first, 0)
            XCTAssert(e.tokens.allSatisfy { $0 >= 0 && Int($0) < layout.vocabSize })
            switch e.task {
            case .text:
                XCTAssertEqual(e.tokens.last, layout.eos)
                XCTAssertFalse(bpe.decodeText(e.tokens).isEmpty)
            case .imageToText:
                XCTAssertEqual(Array(e.tokens[1...1]), [layout.boi])
                XCTAssertEqual(e.tokens[18], layout.eoi)
                let caption = bpe.decodeText(Array(e.tokens[19...]))
                XCTAssert(caption.contains(where: \.isLetter) || caption.contains(where: \.isNumber), caption)
                let image = vq.decode(e.tokens[2..<18].map { layout.code(of: $0) })
                XCTAssertEqual(image.width, 8)
            case .textToImage:
                XCTAssertEqual(Array(e.tokens.suffix(2)), [layout.eoi, layout.eos])
                XCTAssertEqual(e.mask.filter { $0 == 1 }.count, 17, "16 visual tokens and <eoi>")
            }
            seen.insert(e.task)
        }
        XCTAssertEqual(seen, Set(ExampleTask.allCases))
        let slice = try train.examples(3..<7)
        XCTAssertEqual(slice, try (3..<7).map { try train.example($0) })
    }

    func testDatasetSchemaReadByH5py() throws {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import h5py"]
        probe.standardError = FileHandle.nullDevice
        try probe.run()
        probe.waitUntilExit()
        if probe.terminationStatus != 0 {
            print("skipping the h5py schema check: `python3 -c 'import h5py'` failed (pip install h5py numpy)")
            throw XCTSkip("python3 cannot import h5py")
        }
        let d = try SmallDataset.shared()
        let script = """
            import sys, h5py
            t = h5py.File(sys.argv[2], "r")
            for path in sys.argv[1:2]:
                f = h5py.File(path, "r")
                a = f.attrs
                assert a["format"] == "ugen-dataset" and a["version"] == 1, dict(a)
                T, S, K, V = int(a["text_vocab"]), int(a["n_specials"]), int(a["codebook"]), int(a["vocab_size"])
                assert S == 6 and V == T + S + K, (T, S, K, V)
                for i, name in enumerate(["pad", "bos", "eos", "boi", "eoi", "unk_img"]):
                    assert int(a[name + "_id"]) == T + i, name
                assert a["tokenizer_hash"] == t.attrs["content_hash"]
                assert f["tokens"].dtype == ("uint16" if V <= 65536 else "uint32"), f["tokens"].dtype
                assert f["loss_mask"].dtype == "uint8" and f["offsets"].dtype == "int64" and f["task"].dtype == "uint8"
                for name in ["tokens", "loss_mask"]:
                    assert f[name].chunks is not None and f[name].compression == "gzip", name
                off, task = f["offsets"][:], f["task"][:]
                n = len(task)
                assert len(off) == n + 1 and off[0] == 0 and off[-1] == len(f["tokens"]) == len(f["loss_mask"])
                assert set(task.tolist()) == {0, 1, 2}
                tok, mask = f["tokens"], f["loss_mask"]
                for i in range(n):
                    x, m = tok[off[i]:off[i + 1]], mask[off[i]:off[i + 1]]
                    assert x[0] == T + 1 and m[0] == 0 and x.max() < V
                    if task[i] == 1:
                        assert x[1] == T + 3 and x[-1] == T + 2 and m[-1] == 1
                    if task[i] == 2:
                        assert x[-2] == T + 4 and x[-1] == T + 2 and m[-2] == 1 and m[-1] == 0
                        assert ((x[m == 1] >= T + S) | (x[m == 1] == T + 4)).all()
            assert t.attrs["format"] == "ugen-tokenizer"
            assert t["text/merges"].dtype == "int32" and t["text/merges"].shape[1] == 2
            assert t["image/codebook"].dtype == "float32"
            im = t["image"].attrs
            assert t["image/codebook"].shape == (im["codebook_size"], im["patch"] ** 2 * im["channels"])
            print("h5py: schema ok")
            """
        let run = Process()
        run.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        run.arguments = ["python3", "-c", script, d.train, d.tokenizer]
        let err = Pipe()
        run.standardError = err
        try run.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.waitUntilExit()
        XCTAssertEqual(run.terminationStatus, 0, "h5py schema check failed:\n\(message)")
    }

    func testReaderRejectsWrongFormatVersionAndLayout() throws {
        let d = try SmallDataset.shared()
        let dir = try temporaryDirectory(self)
        let layout = try DatasetReader(path: d.train).layout
        XCTAssertThrowsError(try DatasetReader(path: d.train, expecting: VocabLayout(textVocab: 999, codebookSize: 16))) {
            XCTAssert("\($0)".hasPrefix("\(d.train): vocabulary layout T=\(layout.textVocab)"), "\($0)")
        }
        func copy(_ name: String, _ edit: (H5File) throws -> Void) throws -> String {
            let path = dir.appendingPathComponent(name).path
            try FileManager.default.copyItem(atPath: d.train, toPath: path)
            try edit(try H5File.open(path, writable: true))
            return path
        }
        let wrongFormat = try copy("format.h5") { try $0.setAttribute("format", "ugen-checkpoint") }
        XCTAssertThrowsError(try DatasetReader(path: wrongFormat)) {
            XCTAssertEqual("\($0)", "\(wrongFormat): attribute format is 'ugen-checkpoint', expected 'ugen-dataset'")
        }
        let wrongVersion = try copy("version.h5") { try $0.setAttribute("version", 99) }
        XCTAssertThrowsError(try DatasetReader(path: wrongVersion)) {
            XCTAssertEqual("\($0)", "\(wrongVersion): attribute version is 99, this build reads version 1")
        }
        let badLayout = try copy("layout.h5") { try $0.setAttribute("vocab_size", 5) }
        XCTAssertThrowsError(try DatasetReader(path: badLayout)) {
            XCTAssert("\($0)".hasPrefix("\(badLayout): attribute vocab_size is 5"), "\($0)")
        }
        let notHDF5 = dir.appendingPathComponent("text.h5").path
        try "hello".write(toFile: notHDF5, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try DatasetReader(path: notHDF5)) { XCTAssert("\($0)".hasPrefix(notHDF5), "\($0)") }
    }

    /// Examples that straddle the reader's cached blocks (16,384 tokens) read back exactly, in any order.
    func testRandomAccessAcrossBlocks() throws {
        let path = try temporaryDirectory(self).appendingPathComponent("big.h5").path
        let layout = VocabLayout(textVocab: 70_000, codebookSize: 10)  // V > 65,536: stored as uint32
        let writer = try DatasetFileWriter(path: path, wideTokens: layout.vocabSize > 65536)
        var expected: [Example] = []
        var next: Int32 = 0
        for i in 0..<2000 {
            let n = 1 + (i * 7919) % 60
            let tokens = (0..<n).map { _ -> Int32 in
                next = (next + 7) % Int32(layout.vocabSize); return next
            }
            let e = Example(tokens: tokens, mask: tokens.map { UInt8($0 & 1) }, task: ExampleTask(rawValue: UInt8(i % 3))!)
            try writer.append(tokens: e.tokens, mask: e.mask, task: e.task.rawValue)
            expected.append(e)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "only the .partial file exists before finish")
        try writer.finish { file in
            try layout.write(to: file)
            try file.setAttribute("tokenizer_hash", "test")
        }
        let reader = try DatasetReader(path: path)
        XCTAssertGreaterThan(reader.tokenCount, 3 * 16_384)
        XCTAssertEqual(try H5File.open(path).storedType(of: "/tokens").bytes, 4)
        var rng = SplitMix64(seed: 1)
        for _ in 0..<500 {
            let i = rng.nextInt(below: expected.count)
            XCTAssertEqual(try reader.example(i), expected[i])
        }
        XCTAssertEqual(try reader.examples(0..<expected.count), expected)
    }
}
