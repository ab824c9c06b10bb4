# cc_deps.m4 - dependency checks that name the Debian package to install.

# CC_REQUIRE_PKG(VAR, PKG-CONFIG-MODULE, DEBIAN-PACKAGE)
# Sets VAR_CFLAGS/VAR_LIBS from pkg-config or stops configure with a message
# that says which Debian package provides the module.
AC_DEFUN([CC_REQUIRE_PKG], [
  PKG_CHECK_MODULES([$1], [$2], [],
    [AC_MSG_ERROR([$2 not found: install the Debian package $3 (apt-get install $3)])])
])

# CC_REQUIRE_DNNL
# oneDNN ships no pkg-config file: check the header and the library directly.
AC_DEFUN([CC_REQUIRE_DNNL], [
  AC_CHECK_HEADER([oneapi/dnnl/dnnl.h], [],
    [AC_MSG_ERROR([oneDNN header oneapi/dnnl/dnnl.h not found: install the Debian package libdnnl-dev])])
  cc_save_LIBS=$LIBS
  AC_CHECK_LIB([dnnl], [dnnl_engine_create], [DNNL_LIBS=-ldnnl],
    [AC_MSG_ERROR([libdnnl not found: install the Debian package libdnnl-dev])])
  LIBS=$cc_save_LIBS
  AC_SUBST([DNNL_LIBS])
])
