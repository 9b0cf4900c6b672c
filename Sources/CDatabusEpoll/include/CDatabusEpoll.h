// epoll, accept4, eventfd and malloc_trim for the broker's parking lot
// (Sources/MQTTBroker/Server/ParkingLot.swift): Swift's Glibc module includes neither
// <sys/epoll.h> nor accept4.
#pragma once
#ifdef __linux__
#include <malloc.h>
#include <sys/epoll.h>

/// accept4(descriptor, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK).
int databus_accept_nonblocking(int descriptor);

/// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK).
int databus_eventfd_nonblocking(void);

/// Whether the process runs in secure mode (setuid, file capabilities: glibc's AT_SECURE),
/// where glibc ignores most of GLIBC_TUNABLES.
int databus_secure_mode(void);

/// Whether the kernel started this executable with its dynamic loader (the loader's base in
/// the auxiliary vector): false when the loader was run as the program
/// (`ld.so databus ...`, where /proc/self/exe is the loader) or for a static executable.
int databus_started_as_program(void);
#endif
