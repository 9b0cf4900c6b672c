#ifdef __linux__
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/auxv.h>
#include "CDatabusEpoll.h"

int databus_accept_nonblocking(int descriptor) {
    return accept4(descriptor, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
}

int databus_eventfd_nonblocking(void) {
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

int databus_secure_mode(void) {
    return getauxval(AT_SECURE) != 0;
}

int databus_started_as_program(void) {
    return getauxval(AT_BASE) != 0;
}
#endif
