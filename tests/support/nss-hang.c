/* An NSS module whose host and user lookups never return, as a hung LDAP/SSSD/DNS source does.
 * Built by tests/health_e2e.rs into a private directory and enabled only inside a private
 * mount namespace (hosts: hang, and passwd: hang when asked, in an overlaid /etc/nsswitch.conf, the directory added to an
 * overlaid ld.so.cache); never installed on the host. */
#include <unistd.h>

static int hang(void) {
    for (;;)
        pause();
    return 0;
}

int _nss_hang_gethostbyname4_r(void) { return hang(); }
int _nss_hang_gethostbyname3_r(void) { return hang(); }
int _nss_hang_gethostbyname2_r(void) { return hang(); }
int _nss_hang_gethostbyname_r(void) { return hang(); }
int _nss_hang_getpwnam_r(void) { return hang(); }
int _nss_hang_getpwuid_r(void) { return hang(); }
