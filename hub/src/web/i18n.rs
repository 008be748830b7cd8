//! Every string the pages show, in English and Chinese, and the choice of language: the
//! `xiji-lang` cookie first, then the browser's `Accept-Language`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{header, HeaderMap};

/// Name of the cookie that remembers a language picked with the switch link.
pub const LANG_COOKIE: &str = "xiji-lang";

/// A language the pages are available in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// The code used in the cookie and the switch link (`en`, `zh`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    /// The value of `<html lang=...>`.
    pub fn html_lang(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// The other language (what the switch link offers).
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Zh,
            Lang::Zh => Lang::En,
        }
    }

    /// Parses a cookie or link value.
    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The cookie wins; otherwise the most preferred of the browser's languages that is Chinese
    /// or English (`zh*` → Chinese); otherwise English.
    pub fn choose(headers: &HeaderMap) -> Lang {
        if let Some(lang) = crate::http::cookie(headers, LANG_COOKIE).and_then(Lang::from_code) {
            return lang;
        }
        let accept = headers
            .get_all(header::ACCEPT_LANGUAGE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        Lang::from_accept_language(&accept)
    }

    /// Reads an `Accept-Language` value with its `q` weights.
    pub fn from_accept_language(value: &str) -> Lang {
        let mut best: Option<(f32, usize, Lang)> = None;
        for (index, item) in value.split(',').enumerate() {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::Zh
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if q <= 0.0 {
                continue;
            }
            // Highest weight wins; the earlier entry wins a tie.
            let better = match best {
                None => true,
                Some((bq, bi, _)) => q > bq || (q == bq && index < bi),
            };
            if better {
                best = Some((q, index, lang));
            }
        }
        best.map_or(Lang::En, |(_, _, lang)| lang)
    }

    /// All messages in this language, by key.
    pub fn messages(self) -> &'static BTreeMap<&'static str, &'static str> {
        static EN: OnceLock<BTreeMap<&'static str, &'static str>> = OnceLock::new();
        static ZH: OnceLock<BTreeMap<&'static str, &'static str>> = OnceLock::new();
        let (cell, pick): (_, fn(&Message) -> &'static str) = match self {
            Lang::En => (&EN, |m| m.1),
            Lang::Zh => (&ZH, |m| m.2),
        };
        cell.get_or_init(|| CATALOGUE.iter().map(|m| (m.0, pick(m))).collect())
    }

    /// One message; empty if the key is missing (a test checks every key the code uses).
    pub fn text(self, key: &str) -> &'static str {
        self.messages().get(key).copied().unwrap_or("")
    }
}

/// (key, English, Chinese).
type Message = (&'static str, &'static str, &'static str);

/// The catalogue. Placeholders in braces (`{name}`) are filled in by the template or script.
pub const CATALOGUE: &[Message] = &[
    // Layout.
    ("product", "Xiji", "希冀"),
    ("tagline", "JupyterLab for everyone in your school", "人人可用的 JupyterLab 计算平台"),
    ("nav_home", "Home", "首页"),
    ("nav_token", "Tokens", "令牌"),
    ("nav_admin", "Admin", "管理"),
    ("nav_logout", "Log out", "退出登录"),
    ("nav_login", "Sign in", "登录"),
    ("nav_signed_in_as", "Signed in as", "当前用户"),
    ("lang_other", "中文", "English"),
    ("lang_other_title", "切换到中文", "Switch to English"),
    ("footer", "Xiji · a JupyterHub-compatible compute hub", "希冀 · 兼容 JupyterHub 的计算平台"),
    ("never", "never", "从未"),
    ("working", "Working…", "处理中…"),
    ("error_generic", "Error", "错误"),
    ("dismiss", "Dismiss", "关闭"),
    // Login.
    ("login_title", "Sign in", "登录"),
    ("login_intro", "Sign in to start and open your JupyterLab.", "登录后即可启动并打开你的 JupyterLab。"),
    ("login_username", "Username", "用户名"),
    ("login_password", "Password", "密码"),
    ("login_submit", "Sign in", "登录"),
    ("login_with", "Log in with {provider}", "使用{provider}登录"),
    ("login_or", "or with a local account", "或使用本地账号"),
    (
        "login_admins_local",
        "Administrators: sign in with a local account",
        "管理员：使用本地账号登录",
    ),
    (
        "login_local_admins_only",
        "Please use “Log in with {provider}”: local passwords here are for administrators only.",
        "请使用“使用{provider}登录”：本地密码仅供管理员使用。",
    ),
    (
        "login_local_off",
        "Local sign-in is turned off here: use the button above.",
        "本站已关闭本地账号登录，请使用上方的按钮。",
    ),
    ("login_invalid", "Invalid username or password.", "用户名或密码错误。"),
    (
        "login_locked",
        "Too many failed sign-in attempts. Try again in {seconds} seconds.",
        "登录失败次数过多，请在 {seconds} 秒后重试。",
    ),
    (
        "xsrf_failed",
        "This form has expired or was not sent from this site (its _xsrf security token is missing or wrong). Reload the page and try again.",
        "表单已过期或并非来自本站（_xsrf 安全令牌缺失或不匹配）。请刷新页面后重试。",
    ),
    ("xsrf_reload", "Back to the form", "返回表单"),
    // Home.
    ("home_title", "My servers", "我的服务器"),
    (
        "home_intro",
        "Your JupyterLab runs on a server of its own. Press Start: JupyterLab opens once the server is ready, and this page lists every node of a cluster.",
        "你的 JupyterLab 运行在专属服务器上。点击“启动”：服务器就绪后自动打开 JupyterLab；集群的所有节点都列在本页。",
    ),
    ("home_default_server", "Default server", "默认服务器"),
    ("home_named_title", "Named servers", "命名服务器"),
    (
        "home_named_intro",
        "Run more servers side by side, each with its own name.",
        "可以同时运行多个服务器，每个都有自己的名字。",
    ),
    ("home_named_none", "No named servers yet.", "还没有命名服务器。"),
    ("home_named_placeholder", "e.g. project-1", "例如 project-1"),
    ("home_named_label", "Server name", "服务器名称"),
    ("home_named_add", "Add and start", "添加并启动"),
    (
        "home_named_rules",
        "1–30 lower-case letters, digits, '-', '_' or '.'; start with a letter or digit.",
        "1–30 个小写字母、数字、“-”、“_” 或 “.”，以字母或数字开头。",
    ),
    ("home_named_limit", "At most {n} named servers.", "最多 {n} 个命名服务器。"),
    ("status_running", "Running", "运行中"),
    ("status_pending", "Starting…", "启动中…"),
    ("status_stopping", "Stopping…", "停止中…"),
    ("status_stopped", "Stopped", "已停止"),
    (
        "server_stopping_wait",
        "The server is stopping. Try again in a moment.",
        "服务器正在停止，请稍后重试。",
    ),
    ("btn_start", "Start", "启动"),
    ("btn_stop", "Stop", "停止"),
    ("btn_open", "Open", "打开"),
    ("btn_delete", "Delete", "删除"),
    ("last_activity", "Last activity", "最近活动"),
    ("progress_label", "Start-up progress", "启动进度"),
    ("progress_requested", "Server requested", "已请求启动服务器"),
    (
        "progress_queued",
        "Waiting to start: number {position} in line (servers start a few at a time)",
        "排队等待启动：第 {position} 位（服务器分批启动）",
    ),
    ("progress_ready", "Your server is ready.", "你的服务器已就绪。"),
    ("progress_failed", "The server failed to start.", "服务器启动失败。"),
    ("progress_stopped", "The server is stopped.", "服务器已停止。"),
    ("progress_event_log", "Event log", "事件日志"),
    ("confirm_delete_server", "Delete the server {name}?", "确定删除服务器 {name} 吗？"),
    // Spawn pending / not running.
    ("pending_title", "Starting your server", "正在启动服务器"),
    (
        "pending_intro",
        "Your server is starting. This page goes on to it as soon as it is ready.",
        "服务器正在启动，就绪后本页会自动跳转。",
    ),
    ("pending_other_intro", "The server of {user} is starting.", "{user} 的服务器正在启动。"),
    ("btn_home", "Back to home", "返回首页"),
    ("not_running_title", "Server not running", "服务器未运行"),
    (
        "not_running_intro",
        "Your server is not running. Would you like to start it?",
        "你的服务器未在运行。要启动它吗？",
    ),
    (
        "not_running_named",
        "Your server {server} is not running. Would you like to start it?",
        "你的服务器 {server} 未在运行。要启动它吗？",
    ),
    ("not_running_other", "The server of {user} is not running.", "{user} 的服务器未在运行。"),
    (
        "not_running_other_named",
        "The server {server} of {user} is not running.",
        "{user} 的服务器 {server} 未在运行。",
    ),
    ("not_running_start", "Start server", "启动服务器"),
    ("named_servers_disabled", "Named servers are not enabled on this hub.", "本平台未启用命名服务器。"),
    (
        "redirect_loop",
        "Redirect loop detected: the server is running but the proxy does not reach it yet. Try again in a moment.",
        "检测到重定向循环：服务器已运行，但代理暂时无法到达它。请稍后重试。",
    ),
    // Tokens.
    ("token_title", "API tokens", "API 令牌"),
    (
        "token_intro",
        "A token lets a script or another program use the hub's REST API as you. Keep it secret, like a password.",
        "令牌可让脚本或其他程序以你的身份调用平台的 REST API。请像保管密码一样保管它。",
    ),
    ("token_new", "New token", "新建令牌"),
    ("token_note", "Note", "备注"),
    ("token_note_placeholder", "What is it for?", "用途说明"),
    ("token_expires_in", "Expires in", "有效期"),
    ("token_never", "Never", "永不过期"),
    ("token_days", "{n} days", "{n} 天"),
    ("token_scopes", "Scopes (optional)", "权限范围（可选）"),
    (
        "token_scopes_help",
        "Separated by spaces, e.g. read:users:name servers. Empty: all of your permissions.",
        "以空格分隔，例如 read:users:name servers。留空表示拥有你的全部权限。",
    ),
    ("token_create", "Create token", "创建令牌"),
    ("token_created_title", "Your new token", "你的新令牌"),
    (
        "token_created_help",
        "Copy it now: it will not be shown again.",
        "请立即复制：它不会再次显示。",
    ),
    ("btn_copy", "Copy", "复制"),
    ("copied", "Copied", "已复制"),
    ("token_list_title", "Your tokens", "你的令牌"),
    ("token_none", "You have no tokens.", "你还没有令牌。"),
    ("col_note", "Note", "备注"),
    ("col_scopes", "Scopes", "权限范围"),
    ("col_created", "Created", "创建时间"),
    ("col_last_used", "Last used", "最近使用"),
    ("col_expires", "Expires", "过期时间"),
    ("col_actions", "Actions", "操作"),
    ("btn_revoke", "Revoke", "撤销"),
    (
        "confirm_revoke",
        "Revoke this token? Programs using it stop working.",
        "确定撤销此令牌吗？使用它的程序将无法继续工作。",
    ),
    ("all_permissions", "all of your permissions", "全部权限"),
    ("token_oauth", "Signed-in app: {client}", "已授权应用：{client}"),
    // Admin.
    ("admin_title", "Users", "用户管理"),
    ("admin_add_title", "Add users", "添加用户"),
    ("admin_add_names", "User names, one per line", "用户名（每行一个）"),
    ("admin_add_password", "Initial password (optional)", "初始密码（可选）"),
    ("admin_add_role", "Account role", "账号角色"),
    ("admin_add_submit", "Add users", "添加用户"),
    ("admin_added", "Added {n} user(s).", "已添加 {n} 个用户。"),
    ("admin_filter", "Filter by name", "按用户名筛选"),
    ("btn_filter", "Filter", "筛选"),
    ("admin_none", "No users match.", "没有匹配的用户。"),
    ("role_student", "Student", "学生"),
    ("role_teacher", "Teacher", "教师"),
    ("role_admin", "Administrator", "管理员"),
    ("badge_admin", "admin", "管理员"),
    ("badge_you", "you", "你"),
    ("col_user", "User", "用户"),
    ("col_role", "Account role", "账号角色"),
    ("col_server", "Server", "服务器"),
    ("col_last_activity", "Last activity", "最近活动"),
    ("btn_make_admin", "Make admin", "设为管理员"),
    ("btn_unmake_admin", "Remove admin", "取消管理员"),
    ("btn_set_password", "Set password", "设置密码"),
    ("btn_delete_user", "Delete user", "删除用户"),
    (
        "prompt_password",
        "New password for {name} (at least {min} characters):",
        "请输入 {name} 的新密码（至少 {min} 个字符）：",
    ),
    (
        "password_too_short",
        "The password must have at least {min} characters.",
        "密码至少需要 {min} 个字符。",
    ),
    ("password_set", "Password changed.", "密码已修改。"),
    (
        "confirm_delete_user",
        "Delete the user {name}? Their servers are stopped first.",
        "确定删除用户 {name} 吗？其服务器会先被停止。",
    ),
    ("page_prev", "Previous", "上一页"),
    ("page_next", "Next", "下一页"),
    ("page_info", "{from}–{to} of {total}", "第 {from}–{to} 条，共 {total} 条"),
    // Clusters: the spawn form and a running cluster's nodes.
    (
        "home_intro_cluster",
        "Choose an image and the size of your cluster, start it, then open any of its nodes in JupyterLab.",
        "选择镜像和集群规模，启动后即可在 JupyterLab 中打开任意节点。",
    ),
    ("spawn_title", "Start a cluster", "启动集群"),
    ("spawn_intro", "Choose an image and the size of each node.", "选择镜像以及每个节点的配置。"),
    (
        "spawn_intro_named",
        "Server {server}: choose an image and the size of each node.",
        "服务器 {server}：选择镜像以及每个节点的配置。",
    ),
    ("spawn_for_user", "for {user}", "为 {user} 启动"),
    ("spawn_refused", "Cannot start:", "无法启动："),
    ("spawn_image", "Image", "镜像"),
    (
        "spawn_no_images",
        "The image library is empty: the hub's default image is used.",
        "镜像库为空：将使用平台的默认镜像。",
    ),
    (
        "spawn_image_needs_gpu",
        "Needs a GPU; this host has none.",
        "需要 GPU，但本机没有 GPU。",
    ),
    ("spawn_size", "Size of each node", "每个节点的配置"),
    ("spawn_nodes", "Nodes", "节点数"),
    ("spawn_nodes_hint", "1 to {max}", "1 到 {max} 个"),
    ("spawn_pool", "Compute pool", "计算资源池"),
    ("spawn_pool_any", "Default", "默认"),
    (
        "spawn_pool_hint",
        "The machines the nodes run on",
        "节点所在的机器",
    ),
    ("spawn_cpus", "CPU cores per node", "每节点 CPU 核数"),
    ("spawn_cpus_hint", "{min} to {max} cores", "{min} 到 {max} 核"),
    ("spawn_memory", "Memory per node", "每节点内存"),
    (
        "spawn_memory_hint",
        "e.g. 2G or 512M; {min} to {max}",
        "例如 2G 或 512M；{min} 到 {max}",
    ),
    ("spawn_gpus", "GPUs per node", "每节点 GPU 数"),
    ("spawn_gpus_hint", "0 to {max}", "0 到 {max} 块"),
    ("spawn_gpus_none", "This host has no GPU.", "本机没有 GPU。"),
    ("spawn_gpus_uncounted", "GPUs are available.", "本机有 GPU 可用。"),
    ("spawn_storage", "Storage per node", "每节点存储"),
    ("spawn_storage_placeholder", "no limit", "不限"),
    (
        "spawn_storage_hint",
        "e.g. 20G; at most {max}; empty: no limit",
        "例如 20G；最多 {max}；留空表示不限",
    ),
    (
        "spawn_storage_none",
        "This host cannot limit storage per node.",
        "本机无法限制每节点的存储大小。",
    ),
    ("spawn_datasets", "Datasets", "数据集"),
    (
        "spawn_datasets_hint",
        "Each dataset ticked appears read-only at ~/datasets/owner/name on every node.",
        "勾选的数据集以只读方式出现在每个节点的 ~/datasets/所有者/名称 下。",
    ),
    ("badge_gpu", "GPU", "GPU"),
    ("badge_desktop", "Desktop", "桌面"),
    ("badge_jupyter", "Jupyter", "Jupyter"),
    ("cluster_image", "Image", "镜像"),
    (
        "cluster_size",
        "{nodes} node(s) × {cpus} CPU cores, {memory} memory, {gpus} GPU(s) each",
        "{nodes} 个节点 × 每节点 {cpus} 核 CPU、{memory} 内存、{gpus} 块 GPU",
    ),
    ("cluster_storage", ", {storage} storage", "、{storage} 存储"),
    ("node_jupyterlab", "JupyterLab", "JupyterLab"),
    ("node_desktop", "Desktop", "桌面"),
    ("save_image", "Save image", "保存镜像"),
    (
        "save_image_title",
        "Save this node's software and settings as a new image of your own",
        "将此节点的软件和配置保存为你自己的新镜像",
    ),
    (
        "save_image_prompt",
        "Name of the new image (lower-case letters, digits, '-', '_' or '.'):",
        "新镜像的名称（小写字母、数字、“-”、“_” 或 “.”）：",
    ),
    ("save_image_started", "Saving…", "正在保存…"),
    ("save_image_progress", "Saving… {percent}%", "正在保存… {percent}%"),
    (
        "save_image_done",
        "Saved as {image}. It is in My images.",
        "已保存为 {image}，可在“我的镜像”中查看。",
    ),
    ("save_image_failed", "Saving failed: {reason}", "保存失败：{reason}"),
    (
        "save_image_unavailable",
        "Saving images is not available on this hub yet.",
        "本平台暂不支持保存镜像。",
    ),
    // Storage pools.
    ("admin_nav_storage", "Storage", "存储"),
    ("admin_storage_title", "Storage pools", "存储池管理"),
    (
        "admin_storage_intro",
        "Work directories, datasets and projects are stored on these pools; new data goes to the active pool with the most free space.",
        "工作目录、数据集和项目存放在这些存储池上；新数据放在剩余空间最多的活动存储池上。",
    ),
    ("admin_storage_pools", "Pools", "存储池"),
    ("admin_storage_none", "No storage pools yet.", "还没有存储池。"),
    ("admin_storage_add", "Add a pool", "添加存储池"),
    (
        "admin_storage_add_intro",
        "Mount the filesystem first (a local disk, NFS or a GlusterFS volume); the hub checks the mount's type and that it can write there.",
        "请先挂载文件系统（本地磁盘、NFS 或 GlusterFS 卷）；平台会检查挂载类型并确认可以写入。",
    ),
    ("col_pool_name", "Pool", "存储池"),
    ("col_pool_type", "Type", "类型"),
    ("col_pool_space", "Space", "空间"),
    ("col_pool_holds", "Holds", "存放内容"),
    ("pool_name", "Name", "名称"),
    ("pool_type", "Filesystem type", "文件系统类型"),
    ("pool_type_local", "Local disk", "本地磁盘"),
    ("pool_type_nfs", "NFS", "NFS"),
    ("pool_type_glusterfs", "GlusterFS", "GlusterFS"),
    ("pool_path", "Path", "路径"),
    (
        "pool_path_hint",
        "An absolute path on the mounted filesystem, e.g. /mnt/gluster-1.",
        "已挂载文件系统上的绝对路径，例如 /mnt/gluster-1。",
    ),
    ("pool_capacity", "Capacity cap (GB, optional)", "容量上限（GB，可选）"),
    ("pool_capacity_placeholder", "the whole filesystem", "整个文件系统"),
    (
        "pool_capacity_invalid",
        "The capacity cap must be a positive number of GB, e.g. 500.",
        "容量上限必须是正数（GB），例如 500。",
    ),
    ("pool_mounted_as", "mounted as {type} from {source}", "挂载类型 {type}，来源 {source}"),
    ("pool_used", "{used} of {size} used", "已用 {used} / 共 {size}"),
    ("pool_free", "{free} free", "剩余 {free}"),
    ("pool_capacity_cap", "capped at {cap}", "上限 {cap}"),
    ("pool_holds_work", "{n} work directories", "{n} 个工作目录"),
    ("pool_holds_dataset", "{n} datasets", "{n} 个数据集"),
    ("pool_holds_project", "{n} projects", "{n} 个项目"),
    ("pool_holds_nothing", "nothing yet", "暂无内容"),
    ("pool_state_active", "Active", "活动"),
    ("pool_state_draining", "Draining", "排空中"),
    ("btn_add_pool", "Add pool", "添加存储池"),
    ("btn_drain", "Drain", "排空"),
    ("btn_activate", "Activate", "激活"),
    ("btn_remove_pool", "Remove", "移除"),
    (
        "confirm_drain_pool",
        "Drain this pool? It keeps what it holds but takes no new data.",
        "排空该存储池？已有数据保留，但不再存放新数据。",
    ),
    (
        "confirm_remove_pool",
        "Remove this empty pool? Its folder stays on disk.",
        "移除该空存储池？其目录仍保留在磁盘上。",
    ),
    ("pool_done_added", "The pool was added.", "已添加存储池。"),
    ("pool_done_drained", "The pool is draining: it takes no new data.", "存储池正在排空，不再存放新数据。"),
    ("pool_done_activated", "The pool takes new data again.", "存储池已重新激活。"),
    ("pool_done_removed", "The pool was removed.", "已移除存储池。"),
    // Images.
    ("nav_images", "Images", "镜像"),
    ("admin_nav_users", "Users", "用户"),
    ("admin_nav_images", "Image library", "镜像库"),
    ("admin_images_title", "Image library", "镜像库管理"),
    (
        "admin_images_intro",
        "Users start their clusters from the enabled images of the library.",
        "用户从镜像库中已启用的镜像启动集群。",
    ),
    ("admin_images_requests", "Requests to add to the library", "待审核的入库申请"),
    (
        "admin_images_requests_intro",
        "Users saved these images and ask for them to be added to the library.",
        "以下镜像由用户保存，申请加入镜像库。",
    ),
    ("admin_images_library", "All images", "全部镜像"),
    ("admin_images_none", "No images yet.", "还没有镜像。"),
    ("btn_add_jupyter_image", "Add Jupyter image", "添加 Jupyter 镜像"),
    ("btn_add_desktop_image", "Add desktop image", "添加桌面镜像"),
    ("btn_approve", "Approve", "批准"),
    ("btn_reject", "Reject", "拒绝"),
    ("btn_edit", "Edit", "编辑"),
    ("btn_enable", "Enable", "启用"),
    ("btn_disable", "Disable", "停用"),
    ("btn_save", "Save", "保存"),
    ("btn_cancel", "Cancel", "取消"),
    ("btn_add_image", "Add image", "添加镜像"),
    ("col_image_name", "Image", "镜像"),
    ("col_image_ref", "Name and tag", "镜像名与标签"),
    ("col_image_start", "Start settings", "启动设置"),
    ("col_image_status", "Status", "状态"),
    ("col_owner", "Saved by", "保存者"),
    ("visibility_library", "In the library", "已入库"),
    ("visibility_private", "Private", "私有"),
    ("visibility_requested", "Waiting for approval", "等待审核"),
    ("image_enabled_short", "Enabled", "已启用"),
    ("image_disabled_short", "Disabled", "已停用"),
    ("image_owner", "Saved by {user}", "由 {user} 保存"),
    (
        "confirm_delete_image",
        "Delete the image {name}? Running clusters keep running.",
        "确定删除镜像 {name} 吗？正在运行的集群不受影响。",
    ),
    ("image_new_title", "Add an image", "添加镜像"),
    ("image_edit_title", "Edit image", "编辑镜像"),
    ("image_refused", "Not saved:", "未能保存："),
    ("image_kind", "Kind", "类型"),
    ("image_kind_jupyter", "Jupyter image", "Jupyter 镜像"),
    ("image_kind_desktop", "Desktop image", "桌面镜像"),
    ("image_name", "Display name", "显示名称"),
    ("image_name_placeholder", "e.g. Python + MPI", "例如 Python + MPI"),
    ("image_image", "Image name (Docker ID)", "镜像名（Docker ID）"),
    (
        "image_image_hint",
        "Registry and repository, e.g. 127.0.0.1:5000/xiji/base-notebook",
        "镜像仓库地址与名称，例如 127.0.0.1:5000/xiji/base-notebook",
    ),
    ("image_tag", "Tag", "标签"),
    ("image_start_options", "Start options", "启动参数"),
    (
        "image_start_options_hint",
        "Extra arguments for the notebook server (optional).",
        "Notebook 服务器的额外参数（可选）。",
    ),
    ("image_start_command", "Start command", "启动命令"),
    (
        "image_start_command_hint",
        "The command that starts the image's VNC server.",
        "启动镜像中 VNC 服务器的命令。",
    ),
    ("image_vnc_password", "VNC password", "VNC 密码"),
    ("image_vnc_port", "VNC port", "VNC 端口"),
    ("vnc_password_is_set", "set", "已设置"),
    ("vnc_password_not_set", "not set", "未设置"),
    ("vnc_password_keep_placeholder", "unchanged", "保持不变"),
    (
        "vnc_password_set_hint",
        "A password is set. Leave this empty to keep it, or type a new one (6 to 8 characters) to replace it.",
        "已设置密码。留空则保持不变；输入新密码（6 到 8 个字符）则替换。",
    ),
    (
        "vnc_password_unset_hint",
        "Not set: every cluster gets a password of its own. Only for an image that bakes in its own password: 6 to 8 printable characters.",
        "未设置：每个集群各自生成密码。仅当镜像内置了自己的密码时填写：6 到 8 个可打印字符。",
    ),
    ("image_description", "Description", "描述"),
    ("image_needs_gpu", "Needs a GPU", "需要 GPU"),
    ("image_enabled", "Enabled: users may start it", "启用：用户可以启动它"),
    (
        "image_vnc_port_invalid",
        "The VNC port must be a whole number, usually 5901.",
        "VNC 端口必须是整数，通常为 5901。",
    ),
    ("image_done_added", "The image was added.", "镜像已添加。"),
    ("image_done_saved", "The image was saved.", "镜像已保存。"),
    ("image_done_enabled", "The image was enabled.", "镜像已启用。"),
    ("image_done_disabled", "The image was disabled.", "镜像已停用。"),
    ("image_done_approved", "The image was added to the library.", "镜像已加入镜像库。"),
    ("image_done_rejected", "The request was rejected; the image is private again.", "已拒绝申请，镜像恢复为私有。"),
    ("image_done_deleted", "The image was deleted.", "镜像已删除。"),
    (
        "image_done_requested",
        "Your request was sent to the administrators.",
        "入库申请已提交给管理员。",
    ),
    ("image_done_withdrawn", "Your request was withdrawn.", "入库申请已撤回。"),
    ("images_title", "Images", "镜像"),
    (
        "images_intro",
        "Start a cluster from an image of the library, or from one you saved: your images are yours to use at once; add one to the library to share it.",
        "从镜像库中的镜像启动集群，也可以使用你保存的镜像：保存后即可自己使用，加入镜像库后所有人都能使用。",
    ),
    ("images_mine", "My images", "我的镜像"),
    (
        "images_mine_none",
        "You have not saved an image yet.",
        "你还没有保存过镜像。",
    ),
    (
        "images_save_help",
        "To save one, use \"Save image\" on a node of your running cluster:",
        "要保存镜像，请在运行中集群的节点上点击“保存镜像”：",
    ),
    ("btn_request_library", "Request adding to library", "申请加入镜像库"),
    ("btn_withdraw_request", "Withdraw request", "撤回申请"),
    ("images_library", "Image library", "镜像库"),
    ("images_library_none", "The library has no enabled image yet.", "镜像库中还没有已启用的镜像。"),
    // Datasets (the list, the new form, a dataset's page, its uploads and settings).
    ("nav_datasets", "Datasets", "数据集"),
    ("admin_nav_datasets", "Datasets", "数据集"),
    ("datasets_title", "Datasets", "数据集"),
    (
        "datasets_intro",
        "Upload data once and use it, read-only, on every node of the clusters you start.",
        "数据只需上传一次，即可在你启动的任意集群的每个节点上以只读方式使用。",
    ),
    ("datasets_new", "New dataset", "新建数据集"),
    ("datasets_tab_all", "All", "全部"),
    ("datasets_tab_mine", "Mine", "我的"),
    ("datasets_tab_starred", "Starred", "已收藏"),
    ("datasets_search", "Search", "搜索"),
    (
        "datasets_search_placeholder",
        "Search names, descriptions and tags",
        "搜索名称、描述和标签",
    ),
    ("datasets_sort", "Sort by", "排序"),
    ("datasets_sort_updated", "Recently updated", "最近更新"),
    ("datasets_sort_stars", "Most stars", "收藏最多"),
    ("datasets_sort_name", "Name", "名称"),
    ("datasets_tagged", "Tagged", "标签"),
    ("datasets_owned_by", "Owned by", "所有者"),
    ("datasets_tag_clear", "Show all", "显示全部"),
    ("datasets_none", "No datasets yet. Create the first one.", "还没有数据集，来创建第一个吧。"),
    ("datasets_none_found", "No datasets match.", "没有匹配的数据集。"),
    ("dataset_new_title", "New dataset", "新建数据集"),
    (
        "dataset_new_intro",
        "Describe the data, then upload its files and folders on the dataset's page.",
        "先填写数据说明，然后在数据集页面上传文件和文件夹。",
    ),
    ("dataset_owner", "Owner", "所有者"),
    (
        "dataset_owner_hint",
        "Administrators may create a dataset for another user. Empty: yourself.",
        "管理员可以为其他用户创建数据集。留空表示自己。",
    ),
    ("dataset_name", "Name", "名称"),
    ("dataset_name_placeholder", "e.g. weather-2024", "例如 天气-2024"),
    (
        "dataset_name_rules",
        "1–64 letters (any script), digits, '-', '_' or '.'; not starting with '.' or '-'.",
        "1–64 个字符：任意文字的字母、数字、“-”、“_” 或 “.”，不能以 “.” 或 “-” 开头。",
    ),
    ("dataset_name_missing", "Give the dataset a name.", "请填写数据集名称。"),
    ("dataset_description", "Description", "描述"),
    (
        "dataset_description_placeholder",
        "What the data is, where it comes from, how to use it…",
        "数据的内容、来源和用法……",
    ),
    (
        "dataset_description_hint",
        "Markdown: **bold**, lists, tables, links and code.",
        "支持 Markdown：**粗体**、列表、表格、链接和代码。",
    ),
    ("dataset_tags", "Tags", "标签"),
    ("dataset_tags_placeholder", "e.g. weather, csv, 教学", "例如 天气, csv, 教学"),
    (
        "dataset_tags_hint",
        "Words separated by commas or spaces, at most 20.",
        "用逗号或空格分隔，最多 20 个。",
    ),
    ("dataset_license", "License", "许可协议"),
    ("dataset_no_license", "not stated", "未注明"),
    ("dataset_visibility", "Who may see it", "可见范围"),
    ("dataset_visibility_private", "Private", "私有"),
    (
        "dataset_visibility_private_hint",
        "You, the users and groups you share it with, and the administrators.",
        "仅你自己、你共享给的用户和组，以及管理员。",
    ),
    ("dataset_visibility_public", "Public", "公开"),
    (
        "dataset_visibility_public_hint",
        "Every user of this hub may find, read and use it.",
        "本平台的所有用户都可以搜索、查看和使用。",
    ),
    ("dataset_cover", "Cover image", "封面图片"),
    ("dataset_cover_none", "No cover", "无封面"),
    ("dataset_cover_choose", "Choose an image", "选择图片"),
    ("dataset_cover_replace", "Replace the cover", "更换封面"),
    ("dataset_cover_remove", "Remove the cover", "移除封面"),
    (
        "dataset_cover_hint",
        "A PNG, JPEG or WebP image of at most {max}.",
        "PNG、JPEG 或 WebP 图片，不超过 {max}。",
    ),
    (
        "dataset_cover_too_big",
        "The cover may have at most {max}; this image has {size}.",
        "封面最大为 {max}，此图片为 {size}。",
    ),
    (
        "dataset_cover_not_image",
        "The cover must be a PNG, JPEG or WebP image.",
        "封面必须是 PNG、JPEG 或 WebP 图片。",
    ),
    ("dataset_cover_refused", "The cover was not saved: {reason}", "封面未保存：{reason}"),
    ("dataset_cover_saved", "The cover was replaced.", "封面已更换。"),
    ("dataset_create", "Create dataset", "创建数据集"),
    ("dataset_not_found", "This dataset cannot be shown.", "无法显示该数据集。"),
    ("dataset_no_description", "No description.", "暂无描述。"),
    ("dataset_star", "Star", "收藏"),
    ("dataset_unstar", "Unstar", "取消收藏"),
    ("dataset_stars", "Stars", "收藏数"),
    ("dataset_size", "Size", "大小"),
    ("dataset_files", "Files", "文件数"),
    ("dataset_file_count", "{n} files", "{n} 个文件"),
    ("dataset_updated", "Updated", "更新时间"),
    ("dataset_updated_at", "updated", "更新于"),
    ("dataset_mount", "In your clusters", "在集群中的路径"),
    ("dataset_tab_files", "Files", "文件"),
    ("dataset_tab_settings", "Settings", "设置"),
    ("dataset_folder", "Folder", "文件夹"),
    ("dataset_folder_empty", "This folder is empty.", "此文件夹为空。"),
    ("dataset_col_name", "Name", "名称"),
    ("dataset_col_size", "Size", "大小"),
    ("dataset_col_updated", "Updated", "更新时间"),
    ("dataset_download", "Download", "下载"),
    ("dataset_download_zip", "Download as ZIP", "打包下载 ZIP"),
    ("dataset_move", "Rename or move", "重命名/移动"),
    (
        "dataset_move_prompt",
        "New path of {path} (folders separated by '/'):",
        "{path} 的新路径（文件夹之间用 “/” 分隔）：",
    ),
    ("dataset_moved", "Moved {from} to {to}.", "已将 {from} 移动到 {to}。"),
    ("dataset_confirm_delete_file", "Delete the file {path}?", "确定删除文件 {path} 吗？"),
    (
        "dataset_confirm_delete_folder",
        "Delete the folder {path} and everything in it?",
        "确定删除文件夹 {path} 及其中的全部内容吗？",
    ),
    ("dataset_deleted_path", "Deleted {path}.", "已删除 {path}。"),
    ("dataset_upload_title", "Upload", "上传"),
    (
        "dataset_upload_drop",
        "Drop files or whole folders here",
        "将文件或整个文件夹拖到这里",
    ),
    ("dataset_upload_into", "They go into {folder}", "上传到 {folder}"),
    ("dataset_upload_choose_files", "Choose files", "选择文件"),
    ("dataset_upload_choose_folder", "Choose a folder", "选择文件夹"),
    ("dataset_upload_overall", "All files", "全部文件"),
    (
        "dataset_upload_overall_state",
        "{files} of {total_files} files · {done} of {size} ({percent}%)",
        "{files}/{total_files} 个文件 · {done}/{size}（{percent}%）",
    ),
    ("dataset_upload_waiting", "Waiting", "等待中"),
    ("dataset_upload_starting", "Starting…", "准备中…"),
    (
        "dataset_upload_progress",
        "{done} of {size} ({percent}%)",
        "{done}/{size}（{percent}%）",
    ),
    ("dataset_upload_done", "Uploaded", "已上传"),
    ("dataset_upload_failed", "Failed", "失败"),
    ("dataset_upload_retry", "Try again", "重试"),
    (
        "dataset_upload_retrying",
        "Connection lost; going on in {seconds} s",
        "连接中断，{seconds} 秒后继续",
    ),
    (
        "dataset_upload_network_error",
        "The connection to the hub was lost.",
        "与平台的连接已中断。",
    ),
    (
        "dataset_upload_no_offset",
        "The hub did not say how much of the file it has.",
        "平台未返回已接收的文件大小。",
    ),
    (
        "dataset_upload_read_failed",
        "The dropped files could not be read: {reason}",
        "无法读取拖入的文件：{reason}",
    ),
    ("dataset_upload_summary_done", "{done} files uploaded.", "已上传 {done} 个文件。"),
    (
        "dataset_upload_summary_failed",
        "{done} files uploaded, {failed} failed.",
        "已上传 {done} 个文件，{failed} 个失败。",
    ),
    (
        "dataset_upload_compact",
        "{waiting} more files are waiting. Only the files being sent and those that failed are listed.",
        "还有 {waiting} 个文件在排队。这里只列出正在上传和上传失败的文件。",
    ),
    ("dataset_upload_clear", "Clear finished", "清除已完成"),
    ("dataset_upload_unfinished", "Unfinished uploads.", "未完成的上传。"),
    (
        "dataset_upload_unfinished_hint",
        "Drop or choose the same files into the same folder to go on where they stopped, or resume one here.",
        "将相同的文件拖入或选择到同一文件夹即可从中断处继续，也可以在这里逐个继续。",
    ),
    (
        "dataset_upload_unfinished_state",
        "{done} of {size} ({percent}%)",
        "{done}/{size}（{percent}%）",
    ),
    ("dataset_upload_resume", "Resume…", "继续上传…"),
    ("dataset_upload_discard", "Discard", "放弃"),
    (
        "dataset_upload_resume_wrong_size",
        "{name} is not the file of this upload (it should have {size}).",
        "{name} 不是这次上传的文件（应为 {size}）。",
    ),
    ("dataset_settings_title", "Description and visibility", "描述与可见范围"),
    ("dataset_saved", "Saved.", "已保存。"),
    ("dataset_share_title", "Shares", "共享"),
    (
        "dataset_share_intro",
        "Give users or groups access to this dataset: read, or read and write its files.",
        "将数据集共享给用户或组：只读，或可读写其中的文件。",
    ),
    ("dataset_share_none", "Not shared with anyone.", "尚未共享给任何人。"),
    ("dataset_share_col_who", "User or group", "用户或组"),
    ("dataset_share_col_access", "Access", "权限"),
    ("dataset_share_kind", "Share with", "共享对象"),
    ("dataset_share_kind_user", "User", "用户"),
    ("dataset_share_kind_group", "Group", "组"),
    ("dataset_share_name", "Name", "名称"),
    ("dataset_share_access", "Access", "权限"),
    ("dataset_share_access_read", "Read", "只读"),
    ("dataset_share_access_write", "Read and write", "读写"),
    ("dataset_share_add", "Share", "共享"),
    ("dataset_share_remove", "Remove", "移除"),
    ("dataset_delete_title", "Delete this dataset", "删除数据集"),
    (
        "dataset_delete_intro",
        "Its files are deleted and clusters can no longer use it. This cannot be undone.",
        "其中的文件将被删除，集群也将无法再使用它。此操作无法撤销。",
    ),
    ("dataset_delete", "Delete dataset", "删除数据集"),
    (
        "dataset_confirm_delete",
        "Delete the dataset {name} and all its files?",
        "确定删除数据集 {name} 及其全部文件吗？",
    ),
    ("dataset_deleted", "The dataset {name} was deleted.", "数据集 {name} 已删除。"),
    // End of datasets.
    // Projects (the list, the new form, a project's page).
    ("nav_projects", "Projects", "项目"),
    ("projects_title", "Projects", "项目"),
    ("projects_intro", "Work with an image, datasets and a shared folder; run it as a cluster.", "项目把运行镜像、数据集和共享文件夹放在一起，可作为集群运行。"),
    ("projects_new", "New project", "新建项目"),
    ("projects_tab_all", "All", "全部"),
    ("projects_tab_mine", "Mine", "我的"),
    ("projects_tab_starred", "Starred", "已收藏"),
    ("projects_search", "Search", "搜索"),
    ("projects_search_placeholder", "Name, description, tag or image", "名称、描述、标签或镜像"),
    ("projects_sort", "Sort by", "排序"),
    ("projects_sort_updated", "Recently updated", "最近更新"),
    ("projects_sort_stars", "Most stars", "收藏最多"),
    ("projects_empty", "No projects here yet.", "这里还没有项目。"),
    ("projects_page_info", "{from}–{to} of {total}", "第 {from}–{to} 个，共 {total} 个"),
    ("project_new_title", "New project", "新建项目"),
    ("project_new_intro", "A project gets its own folder, mounted at /home/jovyan/work on every node it runs on.", "每个项目有自己的文件夹，运行时挂载在每个节点的 /home/jovyan/work。"),
    ("project_create", "Create project", "创建项目"),
    ("project_created", "Project created.", "项目已创建。"),
    ("project_name", "Name", "名称"),
    ("project_name_rules", "1–64 letters (any script), digits, '-', '_' or '.'; not starting with '.' or '-'.", "1–64 个字母（任何文字）、数字、“-”、“_”或“.”，不能以“.”或“-”开头。"),
    ("project_name_required", "Give the project a name.", "请填写项目名称。"),
    ("project_description", "Description", "描述"),
    ("project_description_hint", "Markdown.", "支持 Markdown。"),
    ("project_tags", "Tags", "标签"),
    ("project_tags_hint", "Separated by commas or spaces.", "用逗号或空格分隔。"),
    ("project_image", "Image", "镜像"),
    ("project_image_none", "The default image", "默认镜像"),
    ("project_datasets", "Datasets", "数据集"),
    ("project_datasets_none", "No datasets.", "没有数据集。"),
    ("project_visibility", "Visibility", "可见性"),
    ("project_visibility_private", "Private", "私有"),
    ("project_visibility_public", "Public", "公开"),
    ("project_star", "Star", "收藏"),
    ("project_unstar", "Unstar", "取消收藏"),
    ("project_stars", "Stars", "收藏数"),
    ("project_fork", "Fork", "复刻"),
    ("project_fork_name", "Name of your fork", "复刻的名称"),
    ("project_forks", "Forks", "复刻数"),
    ("project_forks_count", "{count} forks", "{count} 个复刻"),
    ("project_forked_from", "Forked from", "复刻自"),
    ("project_forked", "Forked: this is your copy.", "已复刻：这是你的副本。"),
    ("project_forked_dropped", "Forked. These datasets were left out because you may not read them: {datasets}", "已复刻。以下数据集你无权读取，未包含在副本中：{datasets}"),
    ("project_fork_counting", "Copying the files: counting them…", "正在复制文件：正在统计…"),
    ("project_fork_copying", "Copying the files: {files} of {files_total} files, {bytes} of {bytes_total}. The project can be run once they are all here.", "正在复制文件：{files}/{files_total} 个文件，{bytes}/{bytes_total}。全部复制完成后即可运行此项目。"),
    ("project_fork_failed", "The copy of the files failed: {message}. This fork holds no files; delete it and fork the original again.", "文件复制失败：{message}。此复刻中没有任何文件；请删除它并重新复刻原项目。"),
    ("project_updated", "Updated", "更新时间"),
    ("project_running_title", "Who runs it now", "正在运行的人"),
    ("project_running_none", "Nobody runs it now.", "目前没有人在运行。"),
    ("project_running_ready", "ready", "已就绪"),
    ("project_running_starting", "starting", "启动中"),
    ("project_run_title", "Run", "运行"),
    ("project_run_intro", "Start your cluster of this project; empty sizes take the hub's defaults.", "启动你的此项目集群；留空的规格使用默认值。"),
    ("project_run", "Run", "运行"),
    ("project_run_nodes", "Nodes", "节点数"),
    ("project_run_cpus", "CPUs per node", "每节点 CPU"),
    ("project_run_memory", "Memory per node", "每节点内存"),
    ("project_run_gpus", "GPUs per node", "每节点 GPU"),
    ("project_run_storage", "Storage", "存储"),
    ("project_run_requested", "Starting…", "正在启动…"),
    ("project_run_ready", "Your server is ready.", "你的服务器已就绪。"),
    ("project_run_failed", "The server did not start.", "服务器未能启动。"),
    ("project_run_open", "Open", "打开"),
    ("project_run_nodes_link", "Nodes on the home page", "在主页查看节点"),
    ("project_settings_title", "Settings", "设置"),
    ("project_saved", "Saved.", "已保存。"),
    ("project_members_title", "Members", "成员"),
    ("project_member", "User", "用户"),
    ("project_member_role", "Role", "角色"),
    ("project_member_add", "Add", "添加"),
    ("project_member_remove", "Remove", "移除"),
    ("project_members_none", "No members yet.", "还没有成员。"),
    ("project_role_viewer", "Viewer", "查看者"),
    ("project_role_editor", "Editor", "编辑者"),
    ("project_delete_title", "Delete this project", "删除此项目"),
    ("project_delete_intro", "Its folder and everything in it are removed. This cannot be undone.", "项目文件夹及其中所有内容都将被删除，无法恢复。"),
    ("project_files_title", "Files", "文件"),
    (
        "project_files_intro",
        "The project's folder: /home/jovyan/work on every node of its clusters.",
        "项目的文件夹：即其集群每个节点上的 /home/jovyan/work。",
    ),
    ("project_delete", "Delete project", "删除项目"),
    ("project_delete_confirm", "Delete {name} and all its files?", "删除 {name} 及其所有文件？"),
    ("project_deleted", "Project deleted.", "项目已删除。"),
    // End of projects.
    // Home page administration and the home page's lists (docs/home-page.md).
    ("home_welcome_title", "Welcome to Xiji", "欢迎使用希冀"),
    (
        "home_welcome_text",
        "Start JupyterLab or a cluster below, open a project, or find a dataset.",
        "在下方启动 JupyterLab 或集群，打开项目，或查找数据集。",
    ),
    ("home_public", "Public", "公开"),
    ("home_private", "Private", "私有"),
    ("home_stars", "Stars", "收藏数"),
    ("home_see_all", "See all", "查看全部"),
    ("home_recent_projects", "My recent projects", "我最近的项目"),
    ("home_recent_none", "You have no projects yet.", "你还没有项目。"),
    ("home_new_project", "Create one", "新建一个"),
    ("home_top_projects", "Popular projects", "热门项目"),
    ("home_top_projects_none", "No public projects yet.", "还没有公开的项目。"),
    ("home_top_datasets", "Popular datasets", "热门数据集"),
    ("home_top_datasets_none", "No public datasets yet.", "还没有公开的数据集。"),
    ("admin_nav_home_page", "Home page", "首页设置"),
    ("admin_home_page_title", "Home page", "首页设置"),
    (
        "admin_home_page_intro",
        "The title and content of everyone's home page and the footer of every page, in both languages. Readers get their page language's text, else the other language's, else the built-in one. Titles take at most {title} characters, content and footer {text}.",
        "所有人首页的标题与内容，以及每个页面的页脚，中英文各一份。读者看到其页面语言的文字；若为空则显示另一种语言的，再为空则显示内置文字。标题最多 {title} 个字符，内容和页脚各最多 {text} 个字符。",
    ),
    ("home_page_updated_by", "Last saved by {name}", "最近由 {name} 保存于"),
    ("home_page_saved", "The home page is saved.", "首页已保存。"),
    ("home_page_english", "English", "英文"),
    ("home_page_chinese", "Chinese", "中文"),
    ("home_page_field_title", "Title", "标题"),
    ("home_page_field_content", "Content", "内容"),
    ("home_page_field_footer", "Footer", "页脚"),
    (
        "home_page_markdown_hint",
        "Markdown: headings, lists, links, tables. HTML is shown as text.",
        "支持 Markdown：标题、列表、链接、表格。HTML 会按原文显示。",
    ),
    ("home_page_save", "Save", "保存"),
    ("admin_nav_projects", "Projects", "项目"),
    ("admin_projects_title", "Projects", "项目管理"),
    (
        "admin_projects_intro",
        "Every project, private ones too. Deleting one removes its files from its storage pool and stops the clusters running it first.",
        "所有项目，包括私有项目。删除项目会先停止正在运行它的集群，再从存储池中删除其文件。",
    ),
    ("admin_projects_search", "Name, description, tag or image", "名称、描述、标签或镜像"),
    ("col_project", "Project", "项目"),
    ("col_visibility", "Visibility", "可见范围"),
    ("col_project_stats", "Stars and forks", "收藏与复刻"),
    ("admin_projects_running", "Running for {users}", "正在为 {users} 运行"),
    ("admin_projects_export", "Export", "导出"),
    ("admin_projects_delete", "Delete", "删除"),
    ("admin_projects_release_delete", "Release and delete", "释放并删除"),
    (
        "admin_projects_confirm_release",
        "{users} run {name} now. Stop their clusters, then delete {name} and all its files?",
        "{users} 正在运行 {name}。先停止他们的集群，再删除 {name} 及其所有文件？",
    ),
    ("admin_projects_deleted", "{name} is deleted.", "{name} 已删除。"),
    ("admin_projects_none", "No projects match.", "没有匹配的项目。"),
    ("admin_projects_import", "Import a project", "导入项目"),
    (
        "admin_projects_import_intro",
        "A project archive (.tar.zst, exported from this or another hub) becomes a new private project of yours; its image and datasets are matched by reference.",
        "项目归档（.tar.zst，从本平台或其他平台导出）将成为你的一个新私有项目；其镜像与数据集按引用匹配。",
    ),
    ("admin_projects_import_file", "Archive", "归档文件"),
    ("admin_projects_import_name", "Name (optional)", "名称（可选）"),
    ("admin_projects_import_name_hint", "the archive's name", "默认使用归档中的名称"),
    ("admin_projects_import_submit", "Import", "导入"),
    ("admin_projects_imported", "Imported as {name}.", "已导入为 {name}。"),
    (
        "admin_projects_imported_left",
        "These datasets were not attached: {datasets}",
        "以下数据集未能关联：{datasets}",
    ),
    // End of home page administration.
    // Usage, billing and budgets.
    ("nav_usage", "Usage", "用量"),
    ("admin_nav_usage", "Usage", "用量"),
    ("admin_nav_billing", "Prices & budgets", "价格与预算"),
    (
        "usage_intro",
        "What the clusters reserved and used, and what it cost, from the metering ledger. Costs are in billing units.",
        "集群预留与实际使用的资源及其费用，数据来自计量账本。费用以计费单位表示。",
    ),
    ("usage_title_user", "Usage of {name}", "{name} 的用量"),
    ("usage_title_group", "Usage of group {name}", "用户组 {name} 的用量"),
    ("usage_title_project", "Usage of project {name}", "项目 {name} 的用量"),
    ("usage_title_installation", "Usage of the whole installation", "全平台用量"),
    ("usage_prev_month", "Previous month", "上个月"),
    ("usage_next_month", "Next month", "下个月"),
    ("usage_from", "From", "起始日"),
    ("usage_to", "To", "截止日"),
    ("usage_show", "Show", "查看"),
    ("usage_csv", "Download CSV", "下载 CSV"),
    ("usage_json", "JSON (API)", "JSON（API）"),
    ("usage_cost", "Cost", "费用"),
    ("usage_units_word", "units", "计费单位"),
    ("usage_cpu_reserved", "CPU reserved", "预留 CPU"),
    ("usage_cpu_used", "CPU used", "实际使用 CPU"),
    ("usage_core_hours", "core-hours", "核·时"),
    ("usage_efficiency", "Efficiency", "效率"),
    ("usage_efficiency_hint", "CPU used ÷ reserved", "实际使用 ÷ 预留 CPU"),
    ("usage_memory", "Memory", "内存"),
    ("usage_gib_hours", "GiB-hours", "GiB·时"),
    ("usage_gpu", "GPU", "GPU"),
    ("usage_gpu_hours", "GPU-hours", "GPU·时"),
    ("usage_cpu", "CPU", "CPU"),
    ("usage_per_day", "Per day", "按日"),
    (
        "usage_chart_intro",
        "Cost per day by resource: CPU {cpu}, memory {memory}, GPU {gpu} units in the period.",
        "按资源划分的每日费用：本期 CPU {cpu}、内存 {memory}、GPU {gpu} 计费单位。",
    ),
    ("usage_col_day", "Day", "日期"),
    ("usage_col_node_hours", "Node-hours", "节点·时"),
    ("usage_col_cpu", "CPU reserved (core-h)", "预留 CPU（核·时）"),
    ("usage_col_cpu_used", "CPU used (core-h)", "使用 CPU（核·时）"),
    ("usage_col_memory", "Memory (GiB-h)", "内存（GiB·时）"),
    ("usage_col_gpu", "GPU (GPU-h)", "GPU（GPU·时）"),
    ("usage_col_project", "Project", "项目"),
    ("usage_col_user", "User", "用户"),
    ("usage_total", "Total", "合计"),
    ("usage_none", "No cluster ran in this period.", "此期间没有运行过集群。"),
    ("usage_per_project", "Per project", "按项目"),
    ("usage_per_user", "Per user", "按用户"),
    ("usage_no_project", "Outside any project", "不属于任何项目"),
    ("admin_billing_title", "Prices and budgets", "价格与预算"),
    (
        "admin_billing_intro",
        "Prices turn reserved resources into billing units; budgets limit what a user, a group or a project may cost in a month.",
        "价格将预留的资源折算为计费单位；预算限制用户、用户组或项目每月的费用。",
    ),
    ("prices_title", "Prices", "价格"),
    (
        "prices_intro",
        "Each version applies from its start until the next one. Usage already billed keeps the version it was priced with, so old bills stay exact; a version can only be removed before it takes effect.",
        "每个版本自生效时起适用，直到下一个版本。已计费的用量保留其计价版本，旧账单因此保持准确；价格版本只能在生效前删除。",
    ),
    ("prices_from", "Takes effect", "生效时间"),
    ("prices_from_hint", "empty: now", "留空：立即生效"),
    ("prices_cpu", "Per CPU-core-hour", "每 CPU 核·时"),
    ("prices_memory", "Per GiB-hour of memory", "每 GiB 内存·时"),
    ("prices_gpu", "Per GPU-hour", "每 GPU·时"),
    ("prices_note", "Note", "备注"),
    ("prices_in_force", "in force", "当前生效"),
    ("prices_scheduled", "scheduled", "待生效"),
    ("prices_delete", "Remove", "删除"),
    ("prices_add", "Add a price version", "添加价格版本"),
    ("prices_confirm_delete", "Remove this scheduled price version?", "删除这个待生效的价格版本？"),
    ("budgets_title", "Budgets", "预算"),
    (
        "budgets_intro",
        "A budget limits the cost of a user, a group (its members together) or a project in a calendar month. Past the warning threshold the users see a warning; once used up, new starts are refused and running clusters are released after the grace period.",
        "预算限制用户、用户组（全体成员合计）或项目在一个自然月内的费用。超过提醒阈值时用户会看到提醒；用尽后新的启动会被拒绝，运行中的集群将在宽限期后被释放。",
    ),
    ("budgets_target", "For", "对象"),
    ("budgets_target_hint", "user, group or owner/project", "用户名、用户组名或 所有者/项目"),
    ("budgets_kind", "Kind", "类型"),
    ("budgets_kind_user", "User", "用户"),
    ("budgets_kind_group", "Group", "用户组"),
    ("budgets_kind_project", "Project", "项目"),
    ("budgets_month", "Month", "月份"),
    ("budgets_month_hint", "empty: every month", "留空：每个月"),
    ("budgets_every_month", "every month", "每月"),
    ("budgets_limit", "Limit (units)", "上限（计费单位）"),
    ("budgets_used", "Used this month", "本月已用"),
    ("budgets_release_at", "Release at", "释放时间"),
    ("budgets_delete", "Remove", "删除"),
    ("budgets_confirm_delete", "Remove this budget?", "删除这个预算？"),
    ("budgets_none", "No budgets yet.", "尚未设置预算。"),
    ("budgets_set", "Set budget", "设置预算"),
    ("budgets_settings", "Warning and release", "提醒与释放"),
    ("budgets_warn_percent", "Warn at (% of the limit)", "提醒阈值（上限的 %）"),
    ("budgets_grace", "Grace period before release (seconds)", "释放前的宽限期（秒）"),
    (
        "budgets_grace_hint",
        "running clusters of a used-up budget are released this long after it ran out",
        "预算用尽后，其运行中的集群将在此时长后被释放",
    ),
    ("budgets_settings_save", "Save", "保存"),
    ("budget_state_ok", "OK", "正常"),
    ("budget_state_warning", "Warning", "提醒"),
    ("budget_state_exceeded", "Used up", "已用尽"),
    (
        "budget_banner_warning",
        "The budget of {target} is {percent} % used ({used} of {limit} units this month).",
        "{target} 的预算已使用 {percent}%（本月 {used} / {limit} 计费单位）。",
    ),
    (
        "budget_banner_exceeded",
        "The budget of {target} is used up ({used} of {limit} units this month): new clusters cannot start.",
        "{target} 的预算已用尽（本月 {used} / {limit} 计费单位）：无法启动新的集群。",
    ),
    ("budget_banner_release", "Running clusters are released at", "运行中的集群将被释放于"),
    ("budget_banner_link", "See usage", "查看用量"),
    ("spawn_cost", "Projected cost", "预计费用"),
    ("spawn_cost_per_hour", "units per hour", "计费单位 / 小时"),
    (
        "spawn_cost_hint",
        "at the current prices, for the sizes above; billed per second while the cluster runs",
        "按当前价格与上面所选规格计算；集群运行期间按秒计费",
    ),
    ("spawn_wait", "Wait in line if the hardware is busy", "硬件繁忙时排队等待"),
    (
        "spawn_wait_hint",
        "otherwise a start that does not fit the free hardware is refused at once",
        "否则，空闲硬件不足时启动请求会被立即拒绝",
    ),
    // End of usage, billing and budgets.
    // Quotas and capacity (web/quotas.rs, admin_quotas.html, quota_card.html).
    ("admin_nav_quotas", "Quotas", "配额"),
    ("admin_quotas_title", "Quotas and capacity", "配额与容量"),
    (
        "admin_quotas_intro",
        "A cluster starts only within its user's quota and the free capacity. Each user has their role's limits unless an exception changes some of them. Cores may be fractional (0.5); sizes are written as in the start form (16G, 512M). Empty means no limit.",
        "集群只有在用户配额和空闲容量之内才能启动。每个用户使用其角色的限额，除非例外设置修改了其中某些项。CPU 核数可以是小数（0.5）；大小的写法与启动表单相同（16G、512M）。留空表示不限。",
    ),
    ("quota_roles", "Defaults per role", "各角色默认配额"),
    ("quota_clusters", "Clusters at once", "同时运行的集群"),
    ("quota_nodes", "Nodes", "节点"),
    ("quota_cpus", "CPU cores", "CPU 核数"),
    ("quota_memory", "Memory", "内存"),
    ("quota_gpus", "GPUs", "GPU"),
    ("quota_storage", "Storage", "存储"),
    ("quota_no_limit", "no limit", "不限"),
    ("quota_role_saved", "The quota of {role} is saved.", "{role}的配额已保存。"),
    ("quota_exceptions", "Exceptions per user", "用户例外"),
    (
        "quota_exceptions_intro",
        "An exception sets some of one user's limits; the fields left empty are their role's (shown in grey).",
        "例外设置会修改某个用户的部分限额；留空的项沿用其角色的限额（灰色显示）。",
    ),
    ("quota_from_class", "campus: {class}", "认证类别：{class}"),
    (
        "quota_from_class_hint",
        "Set from the identity provider's claims, renewed at each login. Saving changes here makes it yours.",
        "来自统一身份认证的声明，每次登录时更新。在此保存修改后即由管理员设定。",
    ),
    ("quota_user", "User name", "用户名"),
    ("quota_find", "Find", "查找"),
    ("quota_exception_for", "Exception for {name} ({role})", "{name}（{role}）的例外"),
    ("quota_exception_saved", "The exception of {name} is saved.", "{name} 的例外已保存。"),
    (
        "quota_exception_removed",
        "The exception of {name} is removed: their role's limits hold again.",
        "{name} 的例外已移除，恢复使用其角色的限额。",
    ),
    (
        "quota_confirm_remove",
        "Remove the exception of {name}? Their role's limits will hold.",
        "移除 {name} 的例外？将恢复使用其角色的限额。",
    ),
    ("quota_exceptions_none", "No user has an exception.", "没有用户设置例外。"),
    ("quota_capacity", "Capacity", "容量"),
    (
        "quota_capacity_intro",
        "What the backend reports it can run at once, and your caps on it (empty: what the backend reports). Starts beyond the free capacity wait in line or are refused.",
        "后端报告的可同时运行的资源，以及你为其设置的上限（留空：以后端报告为准）。超出空闲容量的启动请求将排队等待或被拒绝。",
    ),
    ("col_resource", "Resource", "资源"),
    ("col_reported", "Reported by the backend", "后端报告"),
    ("col_cap", "Cap", "上限"),
    ("col_in_effect", "In effect", "生效"),
    ("col_reserved", "Reserved now", "当前已预留"),
    ("quota_unbounded", "unbounded", "不限"),
    ("quota_caps_saved", "The capacity caps are saved.", "容量上限已保存。"),
    ("home_quota_title", "Your quota", "我的配额"),
    (
        "home_quota_intro",
        "What your running clusters hold, against your limits.",
        "你运行中的集群占用的资源与你的限额。",
    ),
    ("quota_used_of", "{used} of {limit}", "{used} / {limit}"),
    (
        "home_quota_exception",
        "An administrator set some of your limits for you.",
        "管理员为你单独设置了部分限额。",
    ),
    // Errors.
    ("error_code", "Error {code}", "错误 {code}"),
    ("error_400_title", "Bad request", "请求有误"),
    ("error_400_text", "The request could not be understood.", "无法理解该请求。"),
    ("error_403_title", "Access denied", "无权访问"),
    ("error_403_text", "You do not have permission to see this page.", "你没有权限访问此页面。"),
    ("error_404_title", "Page not found", "页面不存在"),
    ("error_404_text", "There is nothing at this address.", "此地址没有内容。"),
    ("error_429_title", "Too many requests", "请求过于频繁"),
    ("error_429_text", "Wait a moment and try again.", "请稍后重试。"),
    ("error_500_title", "Something went wrong", "出错了"),
    (
        "error_500_text",
        "The hub could not complete the request. Try again later.",
        "平台未能完成该请求，请稍后重试。",
    ),
    ("error_503_title", "Service unavailable", "服务不可用"),
    ("error_503_text", "The server is not available right now.", "服务器暂时不可用。"),    // Release policies (web/release.rs, release_notice.html, admin_release.html).
    ("btn_release", "Release", "释放"),
    ("btn_remove_exception", "Remove", "移除"),
    ("admin_nav_release", "Release policies", "释放策略"),
    ("admin_release_title", "Release policies", "释放策略"),
    (
        "admin_release_intro",
        "When running clusters are given back. A cluster keeps the policy it started with: the one chosen at the start, else its user's.",
        "运行中的集群何时被释放。集群沿用启动时的策略：启动时所选的策略，否则为用户的策略。",
    ),
    ("admin_release_default", "Default policy", "默认策略"),
    ("release_policy_label", "Release policy", "释放策略"),
    ("release_grace_label", "Grace period (seconds)", "宽限期（秒）"),
    (
        "release_grace_hint",
        "Automatic: how long a cluster may have no page open before it is released (a reload fits in it).",
        "自动释放：集群在没有打开任何页面多久之后被释放（刷新页面不会触发）。",
    ),
    (
        "release_grace_invalid",
        "The grace period must be a whole number of seconds.",
        "宽限期必须是整数秒。",
    ),
    ("spawn_release", "Release", "释放方式"),
    (
        "spawn_release_hint",
        "Automatic: released once no page of the cluster is open. Manual: kept until you click Release. On logout: released when you log out.",
        "自动释放：集群的页面全部关闭后释放。手动释放：直到你点击“释放”才释放。退出登录时释放：你退出登录时释放。",
    ),
    ("release_policy_automatic", "Automatic", "自动释放"),
    ("release_policy_manual", "Manual", "手动释放"),
    ("release_policy_on_logout", "On logout", "退出登录时释放"),
    (
        "release_policy_help_automatic",
        "released once no page of the cluster (JupyterLab or a desktop, any node) has been open for the grace period",
        "集群的所有页面（任一节点的 JupyterLab 或桌面）关闭超过宽限期后释放",
    ),
    (
        "release_policy_help_manual",
        "closing pages keeps the cluster and its jobs running until its user clicks Release",
        "关闭页面后集群和作业继续运行，直到用户点击“释放”",
    ),
    (
        "release_policy_help_on_logout",
        "released when its user logs out",
        "用户退出登录时释放",
    ),
    ("admin_release_exceptions", "Per-user exceptions", "用户例外"),
    (
        "admin_release_exceptions_intro",
        "A user's own policy instead of the default: Manual allows them to keep clusters running with no page open, Automatic or On logout forbids it.",
        "为某个用户指定不同于默认值的策略：“手动释放”允许其在关闭页面后保留集群，“自动释放”或“退出登录时释放”则禁止。",
    ),
    ("admin_release_no_exceptions", "No user has an exception.", "没有用户例外。"),
    ("admin_release_clusters", "Running clusters", "运行中的集群"),
    (
        "admin_release_clusters_intro",
        "Force the release of a cluster: its nodes stop and its user sees your reason.",
        "强制释放集群：其节点将停止，用户会看到你填写的原因。",
    ),
    ("admin_release_no_clusters", "No cluster is running.", "没有运行中的集群。"),
    ("release_force_reason", "Reason", "原因"),
    ("release_force_placeholder", "The reason the user will see", "用户将看到的原因"),
    (
        "release_force_confirm",
        "Release this cluster now? Everything running on it ends; its work directory is kept.",
        "立即释放该集群？其上运行的程序将结束，工作目录会保留。",
    ),
    ("release_done_default", "The default policy is saved.", "默认策略已保存。"),
    ("release_done_exception", "The exception is saved.", "用户例外已保存。"),
    ("release_done_removed", "The exception is removed.", "用户例外已移除。"),
    ("release_done_released", "The cluster is released.", "集群已释放。"),
    (
        "release_notice_automatic",
        "{server} was released automatically: none of its pages was open.",
        "{server} 已自动释放：它的页面都已关闭。",
    ),
    (
        "release_notice_on_logout",
        "{server} was released when you logged out.",
        "{server} 已在你退出登录时释放。",
    ),
    (
        "release_notice_forced",
        "{server} was released by an administrator.",
        "{server} 已被管理员释放。",
    ),
    ("release_reason_label", "Reason:", "原因："),
    (
        "release_policy_home_automatic",
        "Release policy: automatic. A cluster is released {grace} s after its last page (JupyterLab or a desktop) is closed.",
        "释放策略：自动释放。集群的最后一个页面（JupyterLab 或桌面）关闭 {grace} 秒后，集群将被释放。",
    ),
    (
        "release_policy_home_manual",
        "Release policy: manual. A cluster keeps running when you close its pages, until you click Release.",
        "释放策略：手动释放。关闭页面后集群继续运行，直到你点击“释放”。",
    ),
    (
        "release_policy_home_on_logout",
        "Release policy: on logout. Your clusters are released when you log out.",
        "释放策略：退出登录时释放。你退出登录时，集群将被释放。",
    ),
    (
        "release_leave_warning",
        "Closing this page releases the cluster if no other page of it is open.",
        "如果没有打开该集群的其他页面，关闭此页面将释放集群。",
    ),
    // Compute nodes (web/compute_nodes.rs).
    ("admin_nav_compute", "Compute nodes", "计算节点"),
    ("admin_compute_title", "Compute nodes", "计算节点管理"),
    (
        "admin_compute_intro",
        "The machines clusters run on: what each has, what it can hand out, and what Xiji's clusters use of it. New clusters go only to machines in a compute pool.",
        "运行集群的机器：每台机器的资源、可分配的资源，以及希冀的集群正在使用的部分。新的集群只会放到计算池中的机器上。",
    ),
    ("admin_compute_nodes", "Machines", "机器"),
    (
        "admin_compute_one_host",
        "The {backend} backend runs every cluster on its one host, which is always in the pool default.",
        "{backend} 后端在唯一的主机上运行所有集群，该主机始终属于 default 计算池。",
    ),
    (
        "admin_compute_unlisted",
        "The backend cannot list its machines now. The hub's log says why.",
        "后端暂时无法列出机器，原因见希冀的日志。",
    ),
    ("admin_compute_none", "The backend reports no machine.", "后端没有报告任何机器。"),
    ("admin_compute_add", "Add a compute node by name", "按名称添加计算节点"),
    (
        "admin_compute_add_intro",
        "Give a Kubernetes node's name and a pool: Xiji labels the node and may place new clusters on it. Removing a node takes the label away: no new clusters go there, running ones keep going.",
        "输入 Kubernetes 节点名称并选择计算池：希冀会给该节点加上标签，之后新的集群可以放到它上面。移除节点会去掉标签：不再放置新的集群，正在运行的集群不受影响。",
    ),
    ("admin_compute_pools", "Compute pools", "计算池"),
    (
        "admin_compute_pools_intro",
        "Groups of machines a cluster can ask for (a GPU pool, say). A pool that holds machines cannot be removed.",
        "集群可以指定的机器分组（例如 GPU 计算池）。含有机器的计算池不能移除。",
    ),
    ("col_compute_node", "Machine", "机器"),
    ("col_compute_pool", "Pool", "计算池"),
    ("col_compute_status", "Status", "状态"),
    ("col_compute_cpu", "CPU cores", "CPU 核数"),
    ("col_compute_memory", "Memory", "内存"),
    ("col_compute_gpu", "GPUs", "GPU"),
    ("col_compute_clusters", "Running", "运行中"),
    (
        "col_compute_clusters_title",
        "Nodes of Xiji's clusters running on the machine",
        "该机器上运行的希冀集群节点数",
    ),
    ("compute_in_pool", "pool", "计算池"),
    ("compute_no_pool", "in no pool", "不在任何计算池"),
    ("compute_none", "none", "无"),
    ("col_compute_version", "Version and platform", "版本与平台"),
    ("col_compute_conditions", "Conditions", "状况"),
    ("col_compute_description", "Description", "说明"),
    ("col_compute_members", "Machines", "机器"),
    ("compute_used_of", "{used} used of {allocatable}", "已用 {used} / 可分配 {allocatable}"),
    ("compute_capacity_of", "capacity {capacity}", "总量 {capacity}"),
    (
        "compute_pool_undefined",
        "not a defined pool (labelled by hand)",
        "不是已定义的计算池（手动加的标签）",
    ),
    ("compute_status_ready", "Ready", "就绪"),
    ("compute_status_cordoned", "Cordoned", "已停止调度"),
    ("compute_status_not_ready", "Not ready", "未就绪"),
    ("compute_status_not_managed", "Not managed", "未纳管"),
    (
        "compute_confirm_remove",
        "Take {name} out of Xiji's pools? No new clusters will be placed there; running ones keep going.",
        "将 {name} 移出希冀的计算池？之后不再放置新的集群，正在运行的集群不受影响。",
    ),
    ("compute_confirm_remove_pool", "Remove the pool {name}?", "移除计算池 {name}？"),
    ("btn_compute_remove", "Remove", "移除"),
    ("btn_compute_add", "Add to pool", "加入计算池"),
    ("btn_compute_remove_pool", "Remove", "移除"),
    ("btn_compute_add_pool", "Add pool", "添加计算池"),
    ("compute_node_name", "Node name", "节点名称"),
    ("compute_pool", "Pool", "计算池"),
    ("compute_pool_empty", "no machine", "没有机器"),
    ("compute_pool_name", "Pool name", "计算池名称"),
    (
        "compute_pool_name_hint",
        "1–63 lower-case letters, digits and '-'; start and end with a letter or digit.",
        "1–63 个小写字母、数字或 “-”，以字母或数字开头和结尾。",
    ),
    ("compute_pool_description", "Description", "说明"),
    ("compute_done_added", "The machine is in the pool.", "机器已加入计算池。"),
    (
        "compute_done_removed",
        "The machine is out of Xiji's pools: no new clusters go there.",
        "机器已移出希冀的计算池，不再放置新的集群。",
    ),
    ("compute_done_pool_added", "The pool was added.", "已添加计算池。"),
    ("compute_done_pool_removed", "The pool was removed.", "已移除计算池。"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_both_languages_and_keys_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for (key, en, zh) in CATALOGUE {
            assert!(seen.insert(*key), "duplicate key {key}");
            assert!(
                !en.is_empty() && !zh.is_empty(),
                "{key} is missing a translation"
            );
        }
    }

    #[test]
    fn accept_language_picks_the_most_preferred_of_chinese_and_english() {
        assert_eq!(Lang::from_accept_language("zh-CN,zh;q=0.9"), Lang::Zh);
        assert_eq!(Lang::from_accept_language("zh-TW"), Lang::Zh);
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,zh-CN;q=0.8"),
            Lang::En
        );
        assert_eq!(
            Lang::from_accept_language("fr-FR,zh;q=0.5,en;q=0.3"),
            Lang::Zh
        );
        assert_eq!(Lang::from_accept_language("de-DE"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
        assert_eq!(Lang::from_accept_language("zh;q=0,en;q=0.1"), Lang::En);
    }

    #[test]
    fn the_cookie_overrides_the_browser() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_LANGUAGE, "zh-CN".parse().unwrap());
        assert_eq!(Lang::choose(&headers), Lang::Zh);
        headers.insert(header::COOKIE, "a=b; xiji-lang=en".parse().unwrap());
        assert_eq!(Lang::choose(&headers), Lang::En);
    }
}
