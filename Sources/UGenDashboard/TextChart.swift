/// A line chart drawn with text: unicode braille (each character is a 2×4 grid of dots, so a 40×3 cell
/// chart has 80×12 pixels), or plain ASCII (one `' - _` mark per cell column) for terminals without it.
public enum TextChart {
    /// `rows` lines of `columns` characters plotting `series` over the steps `x` (shared by the charts drawn
    /// side by side, so their steps line up) and values `y`.
    public static func draw(
        _ series: Series, x: ClosedRange<Int>, y: (lo: Double, hi: Double),
        columns: Int, rows: Int, ascii: Bool
    ) -> [String] {
        let cw = ascii ? 1 : 2, ch = ascii ? 3 : 4
        let pw = columns * cw, ph = rows * ch
        var grid = [[Bool]](repeating: [Bool](repeating: false, count: pw), count: ph)

        // Average the points falling in each pixel column, then fill empty columns between two filled ones
        // by straight lines, so sparse data (e.g. a task seen every few steps) still draws a curve.
        var sum = [Double](repeating: 0, count: pw), n = [Int](repeating: 0, count: pw)
        let span = max(1, x.upperBound - x.lowerBound)
        for (s, v) in zip(series.steps, series.values) where v.isFinite && x.contains(s) {
            let px = (s - x.lowerBound) * (pw - 1) / span
            sum[px] += v; n[px] += 1
        }
        var col = [Double?](repeating: nil, count: pw)
        var prev: Int? = nil
        for px in 0..<pw where n[px] > 0 {
            col[px] = sum[px] / Double(n[px])
            if let p = prev, px - p > 1, let a = col[p], let b = col[px] {
                for q in (p + 1)..<px { col[q] = a + (b - a) * Double(q - p) / Double(px - p) }
            }
            prev = px
        }

        let height = y.hi - y.lo
        func pixelRow(_ v: Double) -> Int {
            guard height > 0 else { return ph / 2 }
            return min(ph - 1, max(0, Int(((y.hi - v) / height * Double(ph - 1)).rounded())))
        }
        var last: Int? = nil
        for px in 0..<pw {
            guard let v = col[px] else { last = nil; continue }
            let py = pixelRow(v)
            for r in min(py, last ?? py)...max(py, last ?? py) { grid[r][px] = true }
            last = py
        }
        return ascii ? asciiLines(grid, columns: columns, rows: rows) : brailleLines(grid, columns: columns, rows: rows)
    }

    /// Braille dot bits by (column 0/1, row 0–3) within a cell, as Unicode numbers them.
    private static let dotBits: [[UInt32]] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]]

    private static func brailleLines(_ grid: [[Bool]], columns: Int, rows: Int) -> [String] {
        (0..<rows).map { cy in
            String(
                String.UnicodeScalarView(
                    (0..<columns).map { cx in
                        var bits: UInt32 = 0
                        for dx in 0..<2 { for dy in 0..<4 where grid[cy * 4 + dy][cx * 2 + dx] { bits |= dotBits[dx][dy] } }
                        return Unicode.Scalar(0x2800 + bits)!
                    }))
        }
    }

    private static func asciiLines(_ grid: [[Bool]], columns: Int, rows: Int) -> [String] {
        (0..<rows).map { cy in
            String(
                (0..<columns).map { cx -> Character in
                    let on = (0..<3).filter { grid[cy * 3 + $0][cx] }
                    if on.count > 1 { return "|" }
                    switch on.first {
                    case 0: return "'";
                    case 1: return "-";
                    case 2: return "_";
                    default: return " "
                    }
                })
        }
    }
}
