#pragma once
#include <hdf5.h>
/* HDF5's type and property ids are macros over mutable globals (H5T_NATIVE_FLOAT -> H5T_NATIVE_FLOAT_g
   after H5open()). Swift 6 refuses to read such globals, so these static inline functions return them. */
static inline hid_t ugen_h5t_float(void)  { H5open(); return H5T_NATIVE_FLOAT; }
static inline hid_t ugen_h5t_double(void) { H5open(); return H5T_NATIVE_DOUBLE; }
static inline hid_t ugen_h5t_int8(void)   { H5open(); return H5T_NATIVE_INT8; }
static inline hid_t ugen_h5t_uint8(void)  { H5open(); return H5T_NATIVE_UINT8; }
static inline hid_t ugen_h5t_uint16(void) { H5open(); return H5T_NATIVE_UINT16; }
static inline hid_t ugen_h5t_int32(void)  { H5open(); return H5T_NATIVE_INT32; }
static inline hid_t ugen_h5t_uint32(void) { H5open(); return H5T_NATIVE_UINT32; }
static inline hid_t ugen_h5t_int64(void)  { H5open(); return H5T_NATIVE_INT64; }
static inline hid_t ugen_h5t_uint64(void) { H5open(); return H5T_NATIVE_UINT64; }
static inline hid_t ugen_h5t_c_s1(void)   { H5open(); return H5T_C_S1; }
static inline hid_t ugen_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t ugen_h5p_dataset_create(void) { H5open(); return H5P_DATASET_CREATE; }
static inline hid_t ugen_h5p_file_access(void) { H5open(); return H5P_FILE_ACCESS; }
static inline hid_t ugen_h5s_all(void) { return H5S_ALL; }
static inline hsize_t ugen_h5s_unlimited(void) { return H5S_UNLIMITED; }
/* Silence HDF5's own stderr error stack: we turn every failure into one line of our own. */
static inline void ugen_h5_silence_errors(void) { H5open(); H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
static inline unsigned ugen_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned ugen_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline unsigned ugen_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
