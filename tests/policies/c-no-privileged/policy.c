// A Portcullis policy written in C, without the Rust SDK: it denies
// privileged containers. The test suite generates `policy.h`/`policy.c`
// from the WIT package with wit-bindgen's C generator, compiles this file
// with clang against wasi-libc, and turns the module into a component.

#include <string.h>

#include "policy.h"

static void set(policy_string_t *out, const char *text) {
  policy_string_dup(out, text);
}

static void say(portcullis_policy_log_level_t level, const char *text) {
  policy_string_t message;
  policy_string_set(&message, text);
  portcullis_policy_log_log(level, &message);
}

bool exports_policy_validate_settings(policy_string_t *settings, policy_string_t *err) {
  // This policy takes no settings: the host passes `{}` when there are none.
  bool empty = settings->len == 2 && memcmp(settings->ptr, "{}", 2) == 0;
  policy_string_free(settings);
  if (!empty) {
    set(err, "the C policy takes no settings");
  }
  return empty;
}

// Appends `text` (`len` bytes) to the message being built.
static void append(char *buffer, size_t *used, size_t size, const uint8_t *text, size_t len) {
  size_t room = size - 1 - *used;
  size_t n = len < room ? len : room;
  memcpy(buffer + *used, text, n);
  *used += n;
  buffer[*used] = '\0';
}

void exports_policy_validate(policy_request_t *request, policy_string_t *settings, policy_verdict_t *ret) {
  memset(ret, 0, sizeof *ret);
  ret->allowed = true;
  say(PORTCULLIS_POLICY_LOG_LEVEL_DEBUG, "c-no-privileged: judging a request");

  if (request->workload.is_some) {
    portcullis_policy_types_list_container_t *containers = &request->workload.val.containers;
    for (size_t i = 0; i < containers->len; i++) {
      portcullis_policy_types_container_t *container = &containers->ptr[i];
      policy_option_bool_t privileged = container->security_context.privileged;
      if (privileged.is_some && privileged.val) {
        char message[256];
        size_t used = 0;
        static const char prefix[] = "container \"";
        static const char suffix[] = "\" is privileged (denied by a policy written in C)";
        message[0] = '\0';
        append(message, &used, sizeof message, (const uint8_t *)prefix, sizeof prefix - 1);
        append(message, &used, sizeof message, container->name.ptr, container->name.len);
        append(message, &used, sizeof message, (const uint8_t *)suffix, sizeof suffix - 1);
        ret->allowed = false;
        ret->message.is_some = true;
        set(&ret->message.val, message);
        break;
      }
    }
  }

  policy_request_free(request);
  policy_string_free(settings);
}
