/*
 * greenml simulated NVML: the libnvidia-ml.so.1 that SimulatedNVML.export() builds.
 *
 * This file holds no simulation. It exports the NVML functions greenml's simulation
 * implements, each with its real C signature, and forwards each call through a table of
 * function pointers. The table is filled by the Python simulation
 * (greenml/testing/nvml_sim.py), so there is one model of the driver, in Python.
 *
 * On the first nvmlInit_v2 / nvmlInitWithFlags, the shim, loaded into a Python process
 * by pynvml, takes the GIL with PyGILState_Ensure (looked up with dlsym, so there is no
 * link-time dependency on libpython) and calls
 *     greenml.testing.nvml_sim._attach_shim(<address of greenml_sim_register>)
 * which reads the configuration named by $GREENML_SIM_NVML_CONFIG, builds the simulation
 * and registers one ctypes callback per function with greenml_sim_register(name, fn).
 * ctypes callbacks take the GIL themselves, so forwarded calls from any thread are fine.
 *
 * If the shim is loaded outside Python, or greenml cannot be imported, or the
 * configuration is missing, nvmlInit returns NVML_ERROR_DRIVER_NOT_LOADED (the code real
 * NVML returns when the library is present but the kernel driver is not) and prints one
 * line to stderr; every other function returns NVML_ERROR_UNINITIALIZED.
 *
 * Build: cc -shared -fPIC -O2 -fvisibility=hidden -o libnvidia-ml.so.1 nvml_shim.c -ldl -pthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_DRIVER_NOT_LOADED 9

/*
 * X(is_init, name, params, args): every forwarded function returning nvmlReturn_t.
 * Keep in step with _SIGNATURES in nvml_sim.py.
 */
#define GREENML_NVML_FUNCTIONS(X)                                                          \
    X(1, nvmlInit_v2, (void), ())                                                          \
    X(1, nvmlInitWithFlags, (unsigned int flags), (flags))                                 \
    X(0, nvmlShutdown, (void), ())                                                         \
    X(0, nvmlSystemGetDriverVersion, (char *version, unsigned int length),                 \
      (version, length))                                                                   \
    X(0, nvmlSystemGetNVMLVersion, (char *version, unsigned int length), (version, length)) \
    X(0, nvmlDeviceGetCount_v2, (unsigned int *count), (count))                            \
    X(0, nvmlDeviceGetHandleByIndex_v2, (unsigned int index, nvmlDevice_t *device),        \
      (index, device))                                                                     \
    X(0, nvmlDeviceGetHandleByUUID, (const char *uuid, nvmlDevice_t *device), (uuid, device)) \
    X(0, nvmlDeviceGetIndex, (nvmlDevice_t device, unsigned int *index), (device, index))  \
    X(0, nvmlDeviceGetName, (nvmlDevice_t device, char *name, unsigned int length),        \
      (device, name, length))                                                              \
    X(0, nvmlDeviceGetUUID, (nvmlDevice_t device, char *uuid, unsigned int length),        \
      (device, uuid, length))                                                              \
    X(0, nvmlDeviceGetPowerUsage, (nvmlDevice_t device, unsigned int *power), (device, power)) \
    X(0, nvmlDeviceGetTotalEnergyConsumption,                                              \
      (nvmlDevice_t device, unsigned long long *energy), (device, energy))                 \
    X(0, nvmlDeviceGetEnforcedPowerLimit, (nvmlDevice_t device, unsigned int *limit),      \
      (device, limit))                                                                     \
    X(0, nvmlDeviceGetPowerManagementLimit, (nvmlDevice_t device, unsigned int *limit),    \
      (device, limit))                                                                     \
    X(0, nvmlDeviceGetArchitecture, (nvmlDevice_t device, unsigned int *arch), (device, arch)) \
    X(0, nvmlDeviceIsMigDeviceHandle, (nvmlDevice_t device, unsigned int *isMigDevice),    \
      (device, isMigDevice))                                                               \
    X(0, nvmlDeviceGetDeviceHandleFromMigDeviceHandle,                                     \
      (nvmlDevice_t migDevice, nvmlDevice_t *device), (migDevice, device))                 \
    X(0, nvmlDeviceGetMaxMigDeviceCount, (nvmlDevice_t device, unsigned int *count),       \
      (device, count))                                                                     \
    X(0, nvmlDeviceGetMigDeviceHandleByIndex,                                              \
      (nvmlDevice_t device, unsigned int index, nvmlDevice_t *migDevice),                  \
      (device, index, migDevice))                                                          \
    X(0, nvmlDeviceGetMigMode,                                                             \
      (nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode),         \
      (device, currentMode, pendingMode))

enum {
#define SLOT_ENUM(is_init, name, params, args) SLOT_##name,
    GREENML_NVML_FUNCTIONS(SLOT_ENUM)
#undef SLOT_ENUM
    SLOT_nvmlErrorString,
    SLOT_COUNT
};

static const char *const slot_names[SLOT_COUNT] = {
#define SLOT_NAME(is_init, name, params, args) #name,
    GREENML_NVML_FUNCTIONS(SLOT_NAME)
#undef SLOT_NAME
    "nvmlErrorString",
};

/* Registered callbacks; written once under attach_lock, read with acquire loads. */
static void *slots[SLOT_COUNT];
static pthread_mutex_t attach_lock = PTHREAD_MUTEX_INITIALIZER;
static int attached;

static void *load_slot(int slot) { return __atomic_load_n(&slots[slot], __ATOMIC_ACQUIRE); }

/* Called from Python (_attach_shim) with one callback per function name. */
EXPORT int greenml_sim_register(const char *name, void *fn) {
    int i;
    if (name == NULL) return -1;
    for (i = 0; i < SLOT_COUNT; i++) {
        if (strcmp(slot_names[i], name) == 0) {
            __atomic_store_n(&slots[i], fn, __ATOMIC_RELEASE);
            return 0;
        }
    }
    return -1;
}

typedef int (*py_is_initialized_t)(void);
typedef int (*py_gil_ensure_t)(void); /* returns PyGILState_STATE, an enum */
typedef void (*py_gil_release_t)(int);
typedef void *(*py_import_t)(const char *);
typedef void *(*py_call_method_t)(void *, const char *, const char *, ...);
typedef void (*py_decref_t)(void *);
typedef void (*py_err_print_t)(void);

static void complain(const char *what) {
    fprintf(stderr, "greenml simulated NVML: %s; nvmlInit returns NVML_ERROR_DRIVER_NOT_LOADED\n",
            what);
}

/* Runs greenml.testing.nvml_sim._attach_shim(addr) under the GIL; 1 on success. */
static int attach_to_python(void) {
    py_is_initialized_t is_initialized =
        (py_is_initialized_t)dlsym(RTLD_DEFAULT, "Py_IsInitialized");
    py_gil_ensure_t gil_ensure = (py_gil_ensure_t)dlsym(RTLD_DEFAULT, "PyGILState_Ensure");
    py_gil_release_t gil_release = (py_gil_release_t)dlsym(RTLD_DEFAULT, "PyGILState_Release");
    py_import_t import_module = (py_import_t)dlsym(RTLD_DEFAULT, "PyImport_ImportModule");
    py_call_method_t call_method = (py_call_method_t)dlsym(RTLD_DEFAULT, "PyObject_CallMethod");
    py_decref_t decref = (py_decref_t)dlsym(RTLD_DEFAULT, "Py_DecRef");
    py_err_print_t err_print = (py_err_print_t)dlsym(RTLD_DEFAULT, "PyErr_Print");
    void *module, *result;
    int state, ok = 0;

    if (!is_initialized || !gil_ensure || !gil_release || !import_module || !call_method ||
        !decref || !err_print || !is_initialized()) {
        complain("not loaded into a running Python interpreter");
        return 0;
    }
    state = gil_ensure();
    module = import_module("greenml.testing.nvml_sim");
    if (module == NULL) {
        err_print();
        complain("cannot import greenml.testing.nvml_sim");
    } else {
        result = call_method(module, "_attach_shim", "K",
                             (unsigned long long)(uintptr_t)&greenml_sim_register);
        if (result == NULL) {
            err_print();
            complain("greenml.testing.nvml_sim._attach_shim failed");
        } else {
            decref(result);
            ok = 1;
        }
        decref(module);
    }
    gil_release(state);
    return ok;
}

static int attach(void) {
    int i, ok;
    if (__atomic_load_n(&attached, __ATOMIC_ACQUIRE)) return 1;
    pthread_mutex_lock(&attach_lock);
    if (!attached) {
        ok = attach_to_python();
        for (i = 0; ok && i < SLOT_COUNT; i++) {
            if (load_slot(i) == NULL) {
                fprintf(stderr, "greenml simulated NVML: no callback registered for %s\n",
                        slot_names[i]);
                ok = 0;
            }
        }
        if (!ok) {
            for (i = 0; i < SLOT_COUNT; i++) __atomic_store_n(&slots[i], NULL, __ATOMIC_RELEASE);
        }
        __atomic_store_n(&attached, ok, __ATOMIC_RELEASE);
    }
    ok = attached;
    pthread_mutex_unlock(&attach_lock);
    return ok;
}

#define DEFINE_FORWARD(is_init, name, params, args)                          \
    EXPORT nvmlReturn_t name params {                                        \
        nvmlReturn_t(*fn) params;                                            \
        if (is_init && !attach()) return NVML_ERROR_DRIVER_NOT_LOADED;       \
        fn = (nvmlReturn_t(*) params)load_slot(SLOT_##name);                 \
        return fn ? fn args : NVML_ERROR_UNINITIALIZED;                      \
    }
GREENML_NVML_FUNCTIONS(DEFINE_FORWARD)
#undef DEFINE_FORWARD

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    const char *(*fn)(nvmlReturn_t) =
        (const char *(*)(nvmlReturn_t))load_slot(SLOT_nvmlErrorString);
    if (fn) return fn(result);
    return result == NVML_SUCCESS ? "Success" : "greenml simulated NVML is not attached";
}
