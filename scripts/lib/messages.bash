# Sourced by scripts/install, scripts/uninstall and scripts/bootstrap: their messages in
# English or Simplified Chinese, from the agent's own catalog (docs/i18n.md).
#
#   msg TEXT [NAME=VALUE ...]   TEXT in the chosen language, each {NAME} replaced by VALUE
#
# TEXT is the English sentence as written in the script; scripts/translations extracts
# every say/die/step "TEXT" into the catalog. The language is --lang zh|en (the script
# sets MSG_LANG), else LANGUAGE, LC_ALL, LC_MESSAGES, LANG as the agent reads them.
# English needs nothing; Chinese reads the compiled catalog with python3's gettext (a
# checkout's edge_agent/locale, or the offline bundle's scripts/locale) and falls back to
# English when either is missing, as on a station before python3 is installed.

msg_language() {
  local value name
  for name in LANGUAGE LC_ALL LC_MESSAGES LANG; do
    value=${!name:-}
    if [ -n "$value" ]; then
      case "${value%%:*}" in zh*|ZH*) echo zh ;; *) echo en ;; esac
      return
    fi
  done
  echo en
}

msg_catalog() {
  local here candidate
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  for candidate in "$here/../edge_agent/locale" "$here/locale"; do
    if [ -r "$candidate/zh_CN/LC_MESSAGES/edge_agent.mo" ]; then
      echo "$candidate/zh_CN/LC_MESSAGES/edge_agent.mo"
      return
    fi
  done
}

msg() {
  local text=$1 pair name
  shift
  if [ "${MSG_LANG:=$(msg_language)}" = zh ] && command -v python3 >/dev/null 2>&1; then
    local catalog
    catalog=$(msg_catalog)
    if [ -n "$catalog" ]; then
      text=$(python3 -c 'import gettext, sys
with open(sys.argv[1], "rb") as f:
    sys.stdout.write(gettext.GNUTranslations(f).gettext(sys.argv[2]))' "$catalog" "$text" \
        2>/dev/null || printf '%s' "$text")
    fi
  fi
  for pair in "$@"; do
    name=${pair%%=*}
    text=${text//"{$name}"/"${pair#*=}"}
  done
  printf '%s\n' "$text"
}
