# Packer: bake ssm-companion into an image. Add the two provisioners below to your `build`
# block (any builder: amazon-ebs, qemu, ...), with the package for the image's distribution
# and architecture (from `make packages`) next to the template:
#
#   packer build -var ssmc_package=ssm-companion_0.1.0-1_arm64.deb your-template.pkr.hcl
#
# The image gets the package and the enabled unit but no instance state (the same steps as
# image-builder-component.yaml, which explains why): the service runs with accounts and health
# off while the image is built, then its state directory is emptied, so every instance starts
# clean on first boot with a ledger bound to itself.

variable "ssmc_package" {
  type        = string
  description = "Path of the ssm-companion .deb or .rpm for the image's distribution and architecture."
}

build {
  sources = ["source.amazon-ebs.example"] # yours

  provisioner "file" {
    source      = var.ssmc_package
    destination = "/tmp/ssm-companion-package"
  }

  provisioner "shell" {
    execute_command = "{{ .Vars }} sudo -E sh -eu '{{ .Path }}'"
    inline = [
      "mkdir -p /etc/ssm-companion/config.d",
      "printf '[accounts]\\nenabled = false\\n[health]\\nenabled = false\\n' > /etc/ssm-companion/config.d/99-image-build.toml",
      "case '${var.ssmc_package}' in *.deb) mv /tmp/ssm-companion-package /tmp/ssm-companion.deb && DEBIAN_FRONTEND=noninteractive apt-get install -y /tmp/ssm-companion.deb ;; *) mv /tmp/ssm-companion-package /tmp/ssm-companion.rpm && if command -v dnf >/dev/null; then dnf install -y /tmp/ssm-companion.rpm; else yum install -y /tmp/ssm-companion.rpm; fi ;; esac",
      "rm -f /tmp/ssm-companion.deb /tmp/ssm-companion.rpm",
      "ssm-companion config check",
      "systemctl stop ssm-companion",
      "rm -f /etc/ssm-companion/config.d/99-image-build.toml",
      "rm -rf /var/lib/ssm-companion/*",
      "systemctl is-enabled ssm-companion",
    ]
  }
}
