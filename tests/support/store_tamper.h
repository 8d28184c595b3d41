// For tests that edit a store behind its back (as someone with write access
// to its database could): the SQL layer's connection (matcher/src/database.h,
// on the test's include path) and the removal of the triggers that keep the
// audit log and the signed versions append-only.
#ifndef BANTAY_TESTS_SUPPORT_STORE_TAMPER_H_
#define BANTAY_TESTS_SUPPORT_STORE_TAMPER_H_

#include "bantay/models/status.h"
#include "database.h"

namespace bantay::testing {

inline Status DropAppendOnlyTriggers(matcher::db::Connection& conn, bool sqlite) {
  return conn.ExecScript(sqlite ? "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; "
                                  "DROP TRIGGER versions_no_update; DROP TRIGGER versions_no_delete;"
                                : "DROP TRIGGER audit_append_only ON audit; "
                                  "DROP TRIGGER versions_append_only ON versions;");
}

}  // namespace bantay::testing

#endif  // BANTAY_TESTS_SUPPORT_STORE_TAMPER_H_
