import CHDF5
import Foundation

/// An element type HDF5 can read into and write from directly (HDF5 converts between widths on read).
public protocol H5Element {
    static var h5Type: hid_t { get }
    init()
}
extension Float: H5Element { public static var h5Type: hid_t { ugen_h5t_float() } }
extension Double: H5Element { public static var h5Type: hid_t { ugen_h5t_double() } }
extension Int8: H5Element { public static var h5Type: hid_t { ugen_h5t_int8() } }
extension UInt8: H5Element { public static var h5Type: hid_t { ugen_h5t_uint8() } }
extension UInt16: H5Element { public static var h5Type: hid_t { ugen_h5t_uint16() } }
extension Int32: H5Element { public static var h5Type: hid_t { ugen_h5t_int32() } }
extension UInt32: H5Element { public static var h5Type: hid_t { ugen_h5t_uint32() } }
extension Int64: H5Element { public static var h5Type: hid_t { ugen_h5t_int64() } }
extension UInt64: H5Element { public static var h5Type: hid_t { ugen_h5t_uint64() } }

/// An open HDF5 file. Paths inside it are absolute (`/params/model.norm.weight`); intermediate groups are
/// created on write. Every error names the file and the object.
///
/// Not thread-safe (the Debian HDF5 build is serial): use one file from one thread at a time.
public final class H5File {
    public let path: String
    let id: hid_t

    private init(path: String, id: hid_t) {
        self.path = path
        self.id = id
    }

    deinit { H5Fclose(id) }

    /// Opens an existing file. Fails with a one-line error if it is missing or not HDF5.
    public static func open(_ path: String, writable: Bool = false) throws -> H5File {
        ugen_h5_silence_errors()
        guard FileManager.default.fileExists(atPath: path) else { throw StoreError(path, .noSuchFile) }
        guard H5Fis_hdf5(path) > 0 else { throw StoreError(path, .notHDF5) }
        let id = H5Fopen(path, writable ? ugen_h5f_acc_rdwr() : ugen_h5f_acc_rdonly(), ugen_h5p_default())
        guard id >= 0 else { throw StoreError(path, .cannotOpenFile) }
        return H5File(path: path, id: id)
    }

    /// Creates (or truncates) a file.
    public static func create(_ path: String) throws -> H5File {
        ugen_h5_silence_errors()
        let id = H5Fcreate(path, ugen_h5f_acc_trunc(), ugen_h5p_default(), ugen_h5p_default())
        guard id >= 0 else { throw StoreError(path, .cannotCreateFile) }
        return H5File(path: path, id: id)
    }

    /// Flushes everything written so far to disk (before the rename that makes a file visible).
    public func flush() throws {
        guard H5Fflush(id, H5F_SCOPE_GLOBAL) >= 0 else { throw StoreError(path, .flushFailed) }
    }

    // MARK: Groups and names

    /// Whether an object (group or dataset) exists at `objectPath`.
    public func exists(_ objectPath: String) -> Bool {
        var prefix = ""
        for part in objectPath.split(separator: "/") {
            prefix += "/" + part
            if H5Lexists(id, prefix, ugen_h5p_default()) <= 0 { return false }
        }
        return true
    }

    /// Creates the group and its parents if missing.
    @discardableResult
    public func ensureGroup(_ groupPath: String) throws -> String {
        var prefix = ""
        for part in groupPath.split(separator: "/") {
            prefix += "/" + part
            if H5Lexists(id, prefix, ugen_h5p_default()) <= 0 {
                let g = H5Gcreate2(id, prefix, ugen_h5p_default(), ugen_h5p_default(), ugen_h5p_default())
                guard g >= 0 else { throw StoreError(path, .cannotCreateGroup(prefix)) }
                H5Gclose(g)
            }
        }
        return prefix.isEmpty ? "/" : prefix
    }

    /// Unlinks an object (the space is not reclaimed; tests use it to damage files, tools to rewrite one).
    public func remove(_ objectPath: String) throws {
        guard exists(objectPath), H5Ldelete(id, objectPath, ugen_h5p_default()) >= 0 else {
            throw StoreError(path, .cannotRemove(objectPath))
        }
    }

    /// Names of the direct members of a group, in name order.
    public func members(of groupPath: String) throws -> [String] {
        guard groupPath == "/" || exists(groupPath) else { throw StoreError(path, .missingGroup(groupPath)) }
        let g = H5Gopen2(id, groupPath, ugen_h5p_default())
        guard g >= 0 else { throw StoreError(path, .notAGroup(groupPath)) }
        defer { H5Gclose(g) }
        final class Box { var names: [String] = [] }
        let box = Box()
        let status = withUnsafeMutablePointer(to: &box.names) { ptr -> herr_t in
            H5Literate(
                g, H5_INDEX_NAME, H5_ITER_INC, nil,
                { _, name, _, data in
                    let names = data!.assumingMemoryBound(to: [String].self)
                    names.pointee.append(String(cString: name!))
                    return 0
                }, ptr)
        }
        guard status >= 0 else { throw StoreError(path, .cannotList(groupPath)) }
        return box.names
    }

    /// Every object in the file, visited as HDF5's own tools do (each object header read whole, with its
    /// times, attribute count and sizes), as absolute paths with "/" first. Fails, naming the file, when a
    /// header or link on the way is damaged, even where no reader of known objects would look.
    public func visitAll() throws -> [String] {
        var names: [String] = []
        let fields = UInt32(H5O_INFO_BASIC | H5O_INFO_TIME | H5O_INFO_NUM_ATTRS | H5O_INFO_HDR | H5O_INFO_META_SIZE)
        let status = withUnsafeMutablePointer(to: &names) { ptr -> herr_t in
            H5Ovisit2(
                id, H5_INDEX_NAME, H5_ITER_INC,
                { _, name, _, data in
                    data!.assumingMemoryBound(to: [String].self).pointee.append(String(cString: name!))
                    return 0
                }, ptr, fields)
        }
        guard status >= 0 else { throw StoreError(path, .cannotVisit) }
        return names.map { $0 == "." ? "/" : "/" + $0 }
    }

    /// Whether the object at `objectPath` is a dataset (not a group).
    public func isDataset(_ objectPath: String) -> Bool {
        guard exists(objectPath) else { return false }
        var info = H5O_info_t()
        guard H5Oget_info_by_name2(id, objectPath, &info, UInt32(H5O_INFO_BASIC), ugen_h5p_default()) >= 0 else { return false }
        return info.type == H5O_TYPE_DATASET
    }

    // MARK: Datasets

    private func openDataset(_ name: String) throws -> hid_t {
        guard exists(name) else { throw StoreError(path, .missingDataset(name, notOurs: false)) }
        let d = H5Dopen2(id, name, ugen_h5p_default())
        guard d >= 0 else { throw StoreError(path, .notADataset(name)) }
        return d
    }

    /// The shape of a dataset (`[]` for a scalar).
    public func shape(of name: String) throws -> [Int] {
        let d = try openDataset(name)
        defer { H5Dclose(d) }
        let s = H5Dget_space(d)
        defer { H5Sclose(s) }
        let rank = Int(H5Sget_simple_extent_ndims(s))
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        H5Sget_simple_extent_dims(s, &dims, nil)
        return rank == 0 ? [] : dims.map { Int($0) }
    }

    /// The stored element size in bytes and whether it is a float type (for summaries).
    public func storedType(of name: String) throws -> (bytes: Int, isFloat: Bool, isSigned: Bool) {
        let d = try openDataset(name)
        defer { H5Dclose(d) }
        let t = H5Dget_type(d)
        defer { H5Tclose(t) }
        let cls = H5Tget_class(t)
        return (Int(H5Tget_size(t)), cls == H5T_FLOAT, cls == H5T_FLOAT || H5Tget_sign(t) == H5T_SGN_2)
    }

    /// The byte offset of a contiguous dataset's data in the file (for tests that damage a tensor).
    public func dataOffset(of name: String) throws -> Int {
        let d = try openDataset(name)
        defer { H5Dclose(d) }
        let off = H5Dget_offset(d)
        guard off != haddr_t.max else { throw StoreError(path, .noContiguousStorage(name)) }
        return Int(off)
    }

    /// Reads a whole dataset, converting to `T`.
    public func read<T: H5Element>(_ name: String, as: T.Type = T.self) throws -> [T] {
        let count = try shape(of: name).reduce(1, *)
        var out = [T](repeating: T(), count: count)
        try out.withUnsafeMutableBufferPointer { try read(name, into: $0.baseAddress!, count: count) }
        return out
    }

    /// Reads a whole dataset into caller-owned memory of exactly `count` elements.
    public func read<T: H5Element>(_ name: String, into buffer: UnsafeMutablePointer<T>, count: Int) throws {
        let n = try shape(of: name).reduce(1, *)
        guard n == count else { throw StoreError(path, .elementCount(name, found: n, expected: count)) }
        let d = try openDataset(name)
        defer { H5Dclose(d) }
        guard H5Dread(d, T.h5Type, ugen_h5s_all(), ugen_h5s_all(), ugen_h5p_default(), buffer) >= 0 else {
            throw StoreError(path, .cannotRead(name))
        }
    }

    /// Reads `count` elements of a 1-D dataset starting at `offset`: only those chunks are touched.
    public func readSlice<T: H5Element>(_ name: String, offset: Int, count: Int, into buffer: UnsafeMutablePointer<T>) throws {
        let d = try openDataset(name)
        defer { H5Dclose(d) }
        let fileSpace = H5Dget_space(d)
        defer { H5Sclose(fileSpace) }
        var dims: hsize_t = 0
        guard H5Sget_simple_extent_ndims(fileSpace) == 1 else { throw StoreError(path, .notOneD(name)) }
        H5Sget_simple_extent_dims(fileSpace, &dims, nil)
        guard offset >= 0, count >= 0, offset + count <= Int(dims) else {
            throw StoreError(path, .sliceOutside(name, offset..<offset + count, length: Int(dims)))
        }
        if count == 0 { return }
        var start = hsize_t(offset), cnt = hsize_t(count)
        H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &start, nil, &cnt, nil)
        let memSpace = H5Screate_simple(1, &cnt, nil)
        defer { H5Sclose(memSpace) }
        guard H5Dread(d, T.h5Type, memSpace, fileSpace, ugen_h5p_default(), buffer) >= 0 else {
            throw StoreError(path, .cannotReadSlice(name, offset..<offset + count))
        }
    }

    public func readSlice<T: H5Element>(_ name: String, offset: Int, count: Int, as: T.Type = T.self) throws -> [T] {
        var out = [T](repeating: T(), count: count)
        try out.withUnsafeMutableBufferPointer { try readSlice(name, offset: offset, count: count, into: $0.baseAddress!) }
        return out
    }

    /// Writes a dataset of `shape` from `count` elements at `data`, stored as `storedAs` (defaults to `T`).
    /// With `chunk`, the dataset is chunked (1-D chunks of that many elements along the first axis) and
    /// deflate-compressed.
    public func write<T: H5Element>(
        _ name: String, _ data: UnsafePointer<T>, shape: [Int], storedAs: hid_t? = nil,
        chunk: Int? = nil
    ) throws {
        let parent = (name as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != "/" { try ensureGroup(parent) }
        var dims = shape.map { hsize_t($0) }
        let space = shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(shape.count), &dims, nil)
        defer { H5Sclose(space) }
        let dcpl = H5Pcreate(ugen_h5p_dataset_create())
        defer { H5Pclose(dcpl) }
        let total = shape.reduce(1, *)
        if let chunk, !shape.isEmpty, total > 0 {
            var chunkDims = dims
            let rowElems = shape.dropFirst().reduce(1, *)
            chunkDims[0] = hsize_t(max(1, min(shape[0], chunk / max(rowElems, 1))))
            H5Pset_chunk(dcpl, Int32(shape.count), &chunkDims)
            H5Pset_deflate(dcpl, 4)
        }
        let d = H5Dcreate2(id, name, storedAs ?? T.h5Type, space, ugen_h5p_default(), dcpl, ugen_h5p_default())
        guard d >= 0 else { throw StoreError(path, .cannotCreateDataset(name)) }
        defer { H5Dclose(d) }
        if total > 0 {
            guard H5Dwrite(d, T.h5Type, ugen_h5s_all(), ugen_h5s_all(), ugen_h5p_default(), data) >= 0 else {
                throw StoreError(path, .cannotWrite(name, diskFull: false))
            }
        }
    }

    public func write<T: H5Element>(
        _ name: String, _ values: [T], shape: [Int]? = nil, storedAs: hid_t? = nil,
        chunk: Int? = nil
    ) throws {
        try values.withUnsafeBufferPointer {
            try write(
                name, $0.baseAddress ?? UnsafePointer(bitPattern: 8)!, shape: shape ?? [values.count],
                storedAs: storedAs, chunk: chunk)
        }
    }

    // MARK: Attributes (on the root, a group or a dataset)

    private func openObject(_ objectPath: String) throws -> hid_t {
        guard objectPath == "/" || exists(objectPath) else { throw StoreError(path, .missingObject(objectPath)) }
        let o = H5Oopen(id, objectPath, ugen_h5p_default())
        guard o >= 0 else { throw StoreError(path, .cannotOpenObject(objectPath)) }
        return o
    }

    public func hasAttribute(_ name: String, at objectPath: String = "/") -> Bool {
        guard let o = try? openObject(objectPath) else { return false }
        defer { H5Oclose(o) }
        return H5Aexists(o, name) > 0
    }

    /// Names of the attributes on an object.
    public func attributeNames(at objectPath: String = "/") throws -> [String] {
        let o = try openObject(objectPath)
        defer { H5Oclose(o) }
        var info = H5O_info_t()
        H5Oget_info2(o, &info, UInt32(H5O_INFO_NUM_ATTRS))
        var names: [String] = []
        for i in 0..<info.num_attrs {
            let len = H5Aget_name_by_idx(o, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, ugen_h5p_default())
            guard len >= 0 else { continue }
            var buf = [CChar](repeating: 0, count: Int(len) + 1)
            H5Aget_name_by_idx(o, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(len) + 1, ugen_h5p_default())
            names.append(String(cString: buf))
        }
        return names
    }

    /// Opens attribute `name` of the object at `objectPath` for `body`; a missing one is an error naming both.
    private func withAttribute<R>(_ name: String, at objectPath: String, _ body: (hid_t) throws -> R) throws -> R {
        let o = try openObject(objectPath)
        defer { H5Oclose(o) }
        guard H5Aexists(o, name) > 0 else { throw StoreError(path, .missingAttribute(name, on: objectPath)) }
        let a = H5Aopen(o, name, ugen_h5p_default())
        defer { H5Aclose(a) }
        return try body(a)
    }

    /// Reads a numeric attribute (scalar or array) converted to `T`.
    public func attribute<T: H5Element>(_ name: String, at objectPath: String = "/", as: T.Type = T.self) throws -> [T] {
        try withAttribute(name, at: objectPath) { a in
            let s = H5Aget_space(a)
            defer { H5Sclose(s) }
            let n = max(1, Int(H5Sget_simple_extent_npoints(s)))
            let t = H5Aget_type(a)
            defer { H5Tclose(t) }
            let cls = H5Tget_class(t)
            guard cls == H5T_INTEGER || cls == H5T_FLOAT else {
                throw StoreError(path, .attributeNotNumeric(name, on: objectPath))
            }
            var out = [T](repeating: T(), count: n)
            guard H5Aread(a, T.h5Type, &out) >= 0 else { throw StoreError(path, .cannotReadAttribute(name, on: objectPath)) }
            return out
        }
    }

    /// An attribute's value as bytes, whatever its type: a string's UTF-8, a number array's native bytes
    /// (what attribute checksums are computed over).
    public func attributeBytes(_ name: String, at objectPath: String = "/") throws -> [UInt8] {
        try withAttribute(name, at: objectPath) { a in
            let t = H5Aget_type(a)
            defer { H5Tclose(t) }
            if H5Tget_class(t) == H5T_STRING { return Array(try stringAttribute(name, at: objectPath).utf8) }
            let native = H5Tget_native_type(t, H5T_DIR_DEFAULT)
            guard native >= 0 else { throw StoreError(path, .cannotReadAttribute(name, on: objectPath)) }
            defer { H5Tclose(native) }
            let s = H5Aget_space(a)
            defer { H5Sclose(s) }
            let n = max(1, Int(H5Sget_simple_extent_npoints(s))) * H5Tget_size(native)
            var out = [UInt8](repeating: 0, count: n)
            guard H5Aread(a, native, &out) >= 0 else { throw StoreError(path, .cannotReadAttribute(name, on: objectPath)) }
            return out
        }
    }

    /// Whether an attribute's stored type is a plain one (a string, or a number whose precision fills its
    /// size from bit 0): HDF5 converts odd types silently, other readers (numpy) refuse them.
    public func attributeTypeIsPlain(_ name: String, at objectPath: String = "/") -> Bool {
        guard let o = try? openObject(objectPath) else { return false }
        defer { H5Oclose(o) }
        guard H5Aexists(o, name) > 0 else { return false }
        let a = H5Aopen(o, name, ugen_h5p_default())
        defer { H5Aclose(a) }
        let t = H5Aget_type(a)
        defer { H5Tclose(t) }
        switch H5Tget_class(t) {
        case H5T_STRING: return true
        case H5T_INTEGER, H5T_FLOAT: return H5Tget_offset(t) == 0 && H5Tget_precision(t) == 8 * H5Tget_size(t)
        default: return false
        }
    }

    public func intAttribute(_ name: String, at objectPath: String = "/") throws -> Int {
        Int(try attribute(name, at: objectPath, as: Int64.self)[0])
    }

    public func doubleAttribute(_ name: String, at objectPath: String = "/") throws -> Double {
        try attribute(name, at: objectPath, as: Double.self)[0]
    }

    /// Reads a string attribute (variable- or fixed-length).
    public func stringAttribute(_ name: String, at objectPath: String = "/") throws -> String {
        try withAttribute(name, at: objectPath) { a in
            let t = H5Aget_type(a)
            defer { H5Tclose(t) }
            guard H5Tget_class(t) == H5T_STRING else { throw StoreError(path, .attributeNotString(name, on: objectPath)) }
            if H5Tis_variable_str(t) > 0 {
                let mem = H5Tcopy(ugen_h5t_c_s1())
                defer { H5Tclose(mem) }
                H5Tset_size(mem, Int(bitPattern: UInt(bitPattern: -1)))  // H5T_VARIABLE
                H5Tset_cset(mem, H5T_CSET_UTF8)
                var ptr: UnsafeMutablePointer<CChar>? = nil
                guard H5Aread(a, mem, &ptr) >= 0, let p = ptr else { throw StoreError(path, .cannotReadAttribute(name, on: nil)) }
                defer { free(p) }
                return String(cString: p)
            }
            let size = H5Tget_size(t)
            var buf = [CChar](repeating: 0, count: size + 1)
            guard H5Aread(a, t, &buf) >= 0 else { throw StoreError(path, .cannotReadAttribute(name, on: nil)) }
            return String(cString: buf)
        }
    }

    private func replaceAttribute(_ o: hid_t, _ name: String) {
        if H5Aexists(o, name) > 0 { H5Adelete(o, name) }
    }

    /// Writes a numeric attribute: a scalar when `values` has one element and `asArray` is false.
    public func setAttribute<T: H5Element>(_ name: String, _ values: [T], at objectPath: String = "/", asArray: Bool = false) throws {
        let o = try openObject(objectPath)
        defer { H5Oclose(o) }
        replaceAttribute(o, name)
        var dims = [hsize_t(values.count)]
        let s = (values.count == 1 && !asArray) ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, nil)
        defer { H5Sclose(s) }
        let a = H5Acreate2(o, name, T.h5Type, s, ugen_h5p_default(), ugen_h5p_default())
        guard a >= 0 else { throw StoreError(path, .cannotCreateAttribute(name, on: objectPath)) }
        defer { H5Aclose(a) }
        guard values.withUnsafeBufferPointer({ H5Awrite(a, T.h5Type, $0.baseAddress!) }) >= 0 else {
            throw StoreError(path, .cannotWriteAttribute(name, on: objectPath))
        }
    }

    public func setAttribute(_ name: String, _ value: Int, at objectPath: String = "/") throws {
        try setAttribute(name, [Int64(value)], at: objectPath)
    }

    public func setAttribute(_ name: String, _ value: Double, at objectPath: String = "/") throws {
        try setAttribute(name, [value], at: objectPath)
    }

    /// Writes a variable-length UTF-8 string attribute (h5py reads it as `str`).
    public func setAttribute(_ name: String, _ value: String, at objectPath: String = "/") throws {
        let o = try openObject(objectPath)
        defer { H5Oclose(o) }
        replaceAttribute(o, name)
        let t = H5Tcopy(ugen_h5t_c_s1())
        defer { H5Tclose(t) }
        H5Tset_size(t, Int(bitPattern: UInt(bitPattern: -1)))  // H5T_VARIABLE
        H5Tset_cset(t, H5T_CSET_UTF8)
        let s = H5Screate(H5S_SCALAR)
        defer { H5Sclose(s) }
        let a = H5Acreate2(o, name, t, s, ugen_h5p_default(), ugen_h5p_default())
        guard a >= 0 else { throw StoreError(path, .cannotCreateAttribute(name, on: objectPath)) }
        defer { H5Aclose(a) }
        let status = value.withCString { cstr -> herr_t in
            var p: UnsafePointer<CChar>? = cstr
            return H5Awrite(a, t, &p)
        }
        guard status >= 0 else { throw StoreError(path, .cannotWriteAttribute(name, on: objectPath)) }
    }
}

/// HDF5 storage type ids for `storedAs:` (e.g. store Int32 tokens as uint16 on disk).
public enum H5Stored {
    public static var uint8: hid_t { ugen_h5t_uint8() }
    public static var uint16: hid_t { ugen_h5t_uint16() }
    public static var uint32: hid_t { ugen_h5t_uint32() }
    public static var int64: hid_t { ugen_h5t_int64() }
    public static var float32: hid_t { ugen_h5t_float() }
}
